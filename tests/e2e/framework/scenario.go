package framework

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterIP is the registry Service's fixed address in the tests, inside the test cluster's 10.96.0.0/16.
const ClusterIP = "10.96.0.50"

// RegistryHost is where nodes pull from.
var RegistryHost = net.JoinHostPort(ClusterIP, "443")

// Site is what a user has in place before installing the chart at one site, and the values file they install
// with. Cleanup removes all of it.
type Site struct {
	Namespace  string
	Release    string
	ValuesFile string
	Cleanup    func()
}

// PrepareBYOCSite prepares a namespace for an install with a certificate of our own given as the Azure
// extension's protected settings give it (flat keys, base64 PEM), a parent named by registry.parent.url with its
// credentials in a Secret, and a statically provisioned volume. With ownTrust, the node is made to trust the CA
// the way a cluster-provided trust would, and the chart's node agent is turned off.
func (e *Env) PrepareBYOCSite(ctx context.Context, ns, release string, ownTrust bool) (*Site, error) {
	return e.prepareSite(ctx, ns, release, ClusterIP, ownTrust, "byoc")
}

// PrepareBYOCSiteAt is PrepareBYOCSite for a release at another service.clusterIP, beside one at ClusterIP (a
// nested connected registry and its parent).
func (e *Env) PrepareBYOCSiteAt(ctx context.Context, ns, release, clusterIP string, ownTrust bool) (*Site, error) {
	return e.prepareSite(ctx, ns, release, clusterIP, ownTrust, "byoc")
}

// PrepareGeneratedSite prepares a namespace like PrepareBYOCSite, for an install whose certificates the chart's
// certgen hook generates (no tls.* values, cert-manager off), with the chart's trust distribution on.
func (e *Env) PrepareGeneratedSite(ctx context.Context, ns, release string) (*Site, error) {
	return e.prepareSite(ctx, ns, release, ClusterIP, false, "generated")
}

// PrepareCertManagerSite prepares a namespace like PrepareBYOCSite, for an install whose certificates the
// cluster's cert-manager issues (cert-manager.enabled=true, install=false), with the chart's trust distribution on.
func (e *Env) PrepareCertManagerSite(ctx context.Context, ns, release string) (*Site, error) {
	return e.prepareSite(ctx, ns, release, ClusterIP, false, "cert-manager")
}

// PrepareExampleSite prepares a namespace for one of the examples/ files, which name the parent by a connection
// string: the site's values file holds only what the tutorial does not need on AKS (the parent's private CA, the
// storage class, where the test node's containerd config is).
func (e *Env) PrepareExampleSite(ctx context.Context, ns, release string) (*Site, error) {
	return e.prepareSite(ctx, ns, release, ClusterIP, false, "example")
}

// ConnectionString is the connection string of the test parent, as `az acr connected-registry get-settings` gives
// one for ACR.
func (e *Env) ConnectionString() string {
	return "ConnectedRegistryName=site1;SyncTokenName=" + ParentUser + ";SyncTokenPassword=" + e.ParentPassword +
		";ParentGatewayEndpoint=" + e.Parent.Host + ";ParentEndpointProtocol=https"
}

func (e *Env) prepareSite(ctx context.Context, ns, release, clusterIP string, ownTrust bool, tlsSource string) (*Site, error) {
	byoc := tlsSource == "byoc"
	s := &Site{Namespace: ns, Release: release}
	var undo []func()
	s.Cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	fail := func(err error) (*Site, error) { s.Cleanup(); return nil, err }
	if err := e.EnsureStorageClass(ctx); err != nil {
		return fail(err)
	}
	if ownTrust && byoc {
		untrust, err := e.TrustOnNode(net.JoinHostPort(clusterIP, "443"), e.CA.CertPEM)
		if err != nil {
			return fail(err)
		}
		undo = append(undo, untrust)
	}
	freeVolume, err := e.CreateVolume(ctx, ns+"-data")
	if err != nil {
		return fail(err)
	}
	undo = append(undo, freeVolume)
	if err := e.createNamespace(ctx, ns); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { _ = e.deleteNamespace(context.Background(), ns, true) })
	if _, err := e.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "parent-credentials"},
		StringData: map[string]string{"username": ParentUser, "password": e.ParentPassword},
	}, metav1.CreateOptions{}); err != nil {
		return fail(err)
	}

	svc := release + "-connected-registry"
	certPEM, keyPEM, err := e.CA.Issue(clusterIP, []net.IP{net.ParseIP(clusterIP)},
		[]string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"})
	if err != nil {
		return fail(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	values := map[string]any{
		"cert-manager.enabled": false, "cert-manager": map[string]any{"install": false},
		"service.clusterIP": clusterIP,
		"trustDistribution": map[string]any{"enabled": !ownTrust, "containerdConfig": ContainerdConfig},
		"pvc":               map[string]any{"storageClassName": StorageClass, "storageRequest": "1Gi"},
		"registry": map[string]any{"parent": map[string]any{
			"url": "https://" + e.Parent.Host, "credentialsSecret": "parent-credentials", "caBundle": string(e.CA.CertPEM),
		}},
	}
	switch tlsSource {
	case "example":
		values = map[string]any{
			"pvc":               map[string]any{"storageClassName": StorageClass, "storageRequest": "1Gi"},
			"trustDistribution": map[string]any{"containerdConfig": ContainerdConfig},
			"registry":          map[string]any{"parent": map[string]any{"caBundle": string(e.CA.CertPEM)}},
		}
	case "byoc":
		values["tls.crt"], values["tls.key"], values["tls.cacrt"] = b64(certPEM), b64(keyPEM), b64(e.CA.CertPEM)
	case "cert-manager":
		values["cert-manager.enabled"] = true
	}
	data, err := json.Marshal(values)
	if err != nil {
		return fail(err)
	}
	s.ValuesFile = filepath.Join(e.State, ns+"-protected-settings.json")
	if err := os.WriteFile(s.ValuesFile, data, 0o600); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { _ = os.Remove(s.ValuesFile) })
	return s, nil
}

func (e *Env) createNamespace(ctx context.Context, ns string) error {
	// A namespace of an earlier, interrupted run may still be terminating.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) || time.Now().After(deadline) {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
		_ = e.deleteNamespace(ctx, ns, false)
		time.Sleep(time.Second)
	}
}

// deleteNamespace deletes ns and, with wait, waits until it is gone, so the next install finds its fixed
// ClusterIP free.
func (e *Env) deleteNamespace(ctx context.Context, ns string, wait bool) error {
	err := e.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || !wait {
		return err
	}
	progress := e.Progress("namespace " + ns + " to be deleted")
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		got, err := e.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			progress.Say(string(got.Status.Phase))
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("namespace %s still there after 3m", ns)
}

// WaitServing waits until the registry answers TLS at RegistryHost (kube-proxy programs a new Service within
// seconds) and returns the response to GET /v2/.
func (e *Env) WaitServing(ctx context.Context) (*http.Response, error) {
	client := &http.Client{Transport: e.CA.Transport(), Timeout: 5 * time.Second}
	progress := e.Progress("the registry at " + RegistryHost)
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get("https://" + RegistryHost + "/v2/")
		if err == nil {
			resp.Body.Close()
			return resp, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		progress.Say(err.Error())
		time.Sleep(500 * time.Millisecond)
	}
}

// PullThrough runs a pod whose image is the hello image behind the connected registry, so the node's containerd
// pulls it through the registry from the parent, and waits for it to complete. It returns the pod's output and
// the time from creation to completion, and deletes the pod.
func (e *Env) PullThrough(ctx context.Context, ns string) (string, time.Duration, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "hello", Image: RegistryHost + "/" + HelloImage, ImagePullPolicy: corev1.PullAlways,
			}},
		},
	}
	start := time.Now()
	if _, err := e.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", 0, err
	}
	defer e.deletePod(ns, "hello")
	done, err := e.WaitPodDone(ctx, ns, "hello", 2*time.Minute)
	took := time.Since(start)
	if err != nil {
		return "", took, err
	}
	if got := done.Status.ContainerStatuses[0].Image; got != RegistryHost+"/"+HelloImage {
		return "", took, fmt.Errorf("pod ran image %q", got)
	}
	logs, err := e.Client.CoreV1().Pods(ns).GetLogs("hello", &corev1.PodLogOptions{}).DoRaw(ctx)
	return string(logs), took, err
}

func (e *Env) deletePod(ns, name string) {
	ctx := context.Background()
	_ = e.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
