package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// RegistryPort is the registry container's TLS port, which the Service's 443 targets.
const RegistryPort = "5443"

// StartAzurite installs Azurite with ci/azurite.sh (kept between runs) and runs its blob service on the cluster
// bridge, on a free port, as the site's object store: the registry pods reach it as they reach the parent.
// Stop it with the returned store's Stop.
func (e *Env) StartAzurite(ctx context.Context) (*testenv.ObjectStore, error) {
	out, err := e.Output(ctx, "bash", "ci/azurite.sh")
	if err != nil {
		return nil, err
	}
	bin := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	dir, err := os.MkdirTemp(e.State, "azurite-")
	if err != nil {
		return nil, err
	}
	store, err := testenv.StartAzurite(ctx, bin, BridgeIP, dir, prefixWriter(e.Log, "  azurite | "))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return store, nil
}

// ObjectStorageValues creates, in ns, the Secret with the account key of store (Azurite) and writes a values
// file of replicas registry replicas whose cache is the container of store (the preflight creates it), with the
// extra values. It returns the values file's path.
func (e *Env) ObjectStorageValues(ctx context.Context, ns string, store *testenv.ObjectStore, container string, replicas int, extra map[string]any) (string, error) {
	if _, err := e.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "site-blob"},
		StringData: map[string]string{"accountkey": store.Key},
	}, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("creating the object store's Secret in %s: %w", ns, err)
	}
	values := map[string]any{
		"replicas": replicas,
		"storage": map[string]any{"type": "azure", "azure": map[string]any{
			"accountName": store.Account, "container": container, "serviceURL": store.Endpoint,
			"credentialsSecret": "site-blob",
		}},
	}
	for k, v := range extra {
		values[k] = v
	}
	data, err := json.Marshal(values)
	if err != nil {
		return "", err
	}
	file := filepath.Join(e.State, ns+"-object-storage.json")
	return file, os.WriteFile(file, data, 0o600)
}

// PushLargeImage pushes to the parent, as repoTag, the hello image of the node's platform with two random
// layers added: one of small bytes and one of large bytes, so that no registry has any of them yet and a pull
// takes a while. It returns the image as pushed.
func (e *Env) PushLargeImage(ctx context.Context, repoTag string, small, large int64) (v1.Image, error) {
	admin := &authn.Basic{Username: e.Parent.Admin.Name, Password: e.Parent.Admin.Password}
	ref, err := name.ParseReference(e.Parent.Host + "/" + HelloImage)
	if err != nil {
		return nil, err
	}
	base, err := remote.Image(ref, append(e.Parent.RemoteOptions(ctx, admin),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))...)
	if err != nil {
		return nil, fmt.Errorf("reading %s from the parent: %w", ref, err)
	}
	layers, err := base.Layers()
	if err != nil || len(layers) == 0 {
		return nil, fmt.Errorf("the hello image has no layers: %v", err)
	}
	mt, err := layers[0].MediaType()
	if err != nil {
		return nil, err
	}
	img := base
	for _, size := range []int64{small, large} {
		l, err := random.Layer(size, mt)
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	return img, e.Parent.Push(ctx, repoTag, img)
}

// Blobs are the digests and sizes of an image's config and layers.
func Blobs(img v1.Image) (map[string]int64, error) {
	out := map[string]int64{}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	out[m.Config.Digest.String()] = m.Config.Size
	for _, l := range m.Layers {
		out[l.Digest.String()] = l.Size
	}
	return out, nil
}

// RegistryPods returns the release's registry pods that are running and ready, by name.
func (e *Env) RegistryPods(ctx context.Context, ns, release string) ([]corev1.Pod, error) {
	list, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/component=registry",
	})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// WaitRegistryPods waits until n registry pods of the release are running and ready, and returns them.
func (e *Env) WaitRegistryPods(ctx context.Context, ns, release string, n int, timeout time.Duration) ([]corev1.Pod, error) {
	progress := e.Progress(fmt.Sprintf("%d ready registry pods in %s", n, ns))
	deadline := time.Now().Add(timeout)
	for {
		pods, err := e.RegistryPods(ctx, ns, release)
		if err == nil && len(pods) == n {
			return pods, nil
		}
		if time.Now().After(deadline) {
			return pods, fmt.Errorf("%d ready registry pods in %s after %s, want %d (%v)", len(pods), ns, timeout, n, err)
		}
		progress.Say(fmt.Sprintf("%d ready", len(pods)))
		time.Sleep(500 * time.Millisecond)
	}
}

// RegistryTransport is a client transport of the registry that trusts the test CA. With podIP, every connection
// to RegistryHost goes to that pod's registry port instead of the Service, and the certificate is still checked
// against the Service's address.
func (e *Env) RegistryTransport(podIP string) *http.Transport {
	tr := e.CA.Transport()
	if podIP != "" {
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == RegistryHost {
				addr = net.JoinHostPort(podIP, RegistryPort)
			}
			return d.DialContext(ctx, network, addr)
		}
	}
	return tr
}

// PullAll pulls ref (an image manifest at RegistryHost) through tr with the scenario's client credentials (none:
// the BYOC sites pull anonymously): the manifest, the config and every layer, each checked against its digest
// as go-containerregistry reads it. It returns the bytes read per blob digest.
func PullAll(ctx context.Context, tr http.RoundTripper, ref string) (map[string]int64, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithTransport(tr))
	if err != nil {
		return nil, fmt.Errorf("pulling the manifest of %s: %w", ref, err)
	}
	got := map[string]int64{}
	cfgName, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("pulling the config of %s: %w", ref, err)
	}
	got[cfgName.String()] = int64(len(cfg))
	layers, err := img.Layers()
	if err != nil {
		return got, err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return got, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return got, fmt.Errorf("pulling layer %s of %s: %w", d, ref, err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return got, fmt.Errorf("reading layer %s of %s after %d bytes: %w", d, ref, n, err)
		}
		got[d.String()] = n
	}
	return got, nil
}

// StartPullPod creates a pod that runs image, pulled by the node's containerd with PullAlways.
func (e *Env) StartPullPod(ctx context.Context, ns, podName, image string) error {
	_, err := e.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "hello", Image: image, ImagePullPolicy: corev1.PullAlways}},
		},
	}, metav1.CreateOptions{})
	return err
}

// PullFailures counts the events of the pods in ns named prefix... that report a failed image pull (kubelet's
// Failed with ErrImagePull, or BackOff pulling): what the node retried.
func (e *Env) PullFailures(ctx context.Context, ns, prefix string) (int, []string, error) {
	list, err := e.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, nil, err
	}
	n := 0
	var msgs []string
	for _, ev := range list.Items {
		if ev.InvolvedObject.Kind != "Pod" || ev.Type != corev1.EventTypeWarning || !strings.HasPrefix(ev.InvolvedObject.Name, prefix) {
			continue
		}
		if ev.Reason == "Failed" || ev.Reason == "BackOff" {
			n += int(max(ev.Count, 1))
			msgs = append(msgs, ev.InvolvedObject.Name+": "+ev.Message)
		}
	}
	return n, msgs, nil
}
