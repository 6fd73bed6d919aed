package clientauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// OwnerAnnotation marks a pull Secret with the release that wrote it (<namespace>/<release>): PullSecrets writes
// and deletes only Secrets that carry its own Owner there.
const OwnerAnnotation = "connected-registry.io/pull-secret-of"

// ErrNotOurs is the error of a pull Secret that exists without this release's OwnerAnnotation.
var ErrNotOurs = errors.New("exists and was not written by this release: delete it, or choose another clientTokens.pullSecret.name")

// PullSecrets writes a kubernetes.io/dockerconfigjson Secret for one client token into each of Namespaces, so
// pods there pull with imagePullSecrets. The token's name and password come from the Secret Source in
// SourceNamespace (keys username and password), never from values; Sync copies them again after a rotation.
type PullSecrets struct {
	Client          kubernetes.Interface
	SourceNamespace string
	Source          string
	// Name is the pull Secret's name in every namespace; Server the registry (<clusterIP>:443).
	Name, Server string
	Namespaces   []string
	// Owner is the release (<namespace>/<release>), written in OwnerAnnotation.
	Owner string
}

// dockerConfig is the .dockerconfigjson document kubelet reads.
func dockerConfig(server, user, password string) ([]byte, error) {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return json.Marshal(map[string]any{"auths": map[string]any{server: map[string]string{
		"username": user, "password": password, "auth": auth}}})
}

// Sync writes the pull Secret into every namespace where it is missing or differs. Errors name the namespace
// and the Secret, never the password.
func (p *PullSecrets) Sync(ctx context.Context) error {
	src, err := p.Client.CoreV1().Secrets(p.SourceNamespace).Get(ctx, p.Source, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the pull credentials Secret %s/%s: %w", p.SourceNamespace, p.Source, err)
	}
	user, password := string(src.Data["username"]), string(src.Data["password"])
	if user == "" || password == "" {
		return fmt.Errorf("the pull credentials Secret %s/%s needs the keys username and password (a client token's name and password)", p.SourceNamespace, p.Source)
	}
	data, err := dockerConfig(p.Server, user, password)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range p.Namespaces {
		if err := p.write(ctx, ns, data); err != nil {
			errs = append(errs, fmt.Errorf("pull Secret %s/%s: %w", ns, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (p *PullSecrets) write(ctx context.Context, ns string, data []byte) error {
	secrets := p.Client.CoreV1().Secrets(ns)
	cur, err := secrets.Get(ctx, p.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: ns,
				Labels:      map[string]string{"app.kubernetes.io/managed-by": "connected-registry-token-server"},
				Annotations: map[string]string{OwnerAnnotation: p.Owner}},
			Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if cur.Annotations[OwnerAnnotation] != p.Owner {
		return ErrNotOurs
	}
	if cur.Type != corev1.SecretTypeDockerConfigJson {
		return fmt.Errorf("exists with type %s, not %s: it is not ours to overwrite", cur.Type, corev1.SecretTypeDockerConfigJson)
	}
	if bytes.Equal(cur.Data[corev1.DockerConfigJsonKey], data) {
		return nil
	}
	cur = cur.DeepCopy()
	if cur.Data == nil {
		cur.Data = map[string][]byte{}
	}
	cur.Data[corev1.DockerConfigJsonKey] = data
	_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// Delete removes the pull Secret from every namespace where it carries this release's OwnerAnnotation, printing
// one line per namespace; a missing Secret is fine, one of another owner is left alone and named.
func (p *PullSecrets) Delete(ctx context.Context, out io.Writer) error {
	var errs []error
	for _, ns := range p.Namespaces {
		secrets := p.Client.CoreV1().Secrets(ns)
		cur, err := secrets.Get(ctx, p.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			fmt.Fprintf(out, "pull Secret %s/%s: absent\n", ns, p.Name)
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("pull Secret %s/%s: %w", ns, p.Name, err))
			continue
		case cur.Annotations[OwnerAnnotation] != p.Owner:
			fmt.Fprintf(out, "pull Secret %s/%s: left alone, not written by %s\n", ns, p.Name, p.Owner)
			continue
		}
		uid := cur.UID
		err = secrets.Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("pull Secret %s/%s: %w", ns, p.Name, err))
			continue
		}
		fmt.Fprintf(out, "pull Secret %s/%s: deleted\n", ns, p.Name)
	}
	return errors.Join(errs...)
}

// Follow runs Sync now, whenever the Source Secret changes (a watch of that one name), and every resync (which
// puts back a pull Secret someone deleted), until ctx ends. Failures are logged, never the password.
func (p *PullSecrets) Follow(ctx context.Context, resync time.Duration, log *slog.Logger) {
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	sel := fields.OneTermEqualSelector("metadata.name", p.Source).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return p.Client.CoreV1().Secrets(p.SourceNamespace).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return p.Client.CoreV1().Secrets(p.SourceNamespace).Watch(ctx, o)
		},
	}
	_, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: cache.ToListWatcherWithWatchListSemantics(lw, p.Client),
		ObjectType:    &corev1.Secret{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { poke() },
			UpdateFunc: func(any, any) { poke() },
		},
	})
	go ctrl.RunWithContext(ctx)
	t := time.NewTicker(resync)
	defer t.Stop()
	poke()
	last := "not written yet"
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
		err := p.Sync(ctx)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		switch {
		case err != nil && msg != last:
			log.Error("pull Secrets", "secret", p.Name, "namespaces", p.Namespaces, "err", err)
		case err == nil && last != "":
			log.Info("pull Secrets written", "secret", p.Name, "namespaces", p.Namespaces)
		}
		last = msg
	}
}
