package clientauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

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
				Labels: map[string]string{"app.kubernetes.io/managed-by": "connected-registry-token-server"}},
			Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
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
