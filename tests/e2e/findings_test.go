package e2e_test

// The findings of issue 20 that only a real cluster shows: a namespace that enforces Pod Security, a ResourceQuota
// without a LimitRange, releases that failed and are uninstalled, Helm killed in the middle of its hooks, and the
// powers each pod's token really has.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// valuesFile writes values as a JSON values file of the test.
func valuesFile(t *testing.T, values map[string]any) string {
	t.Helper()
	data, err := json.Marshal(values)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "values.json")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	return file
}

// requireNothingLeft fails when the namespace holds anything of the release after uninstall (the site's own
// parent-credentials Secret aside), or the cluster any of its cluster-scoped objects.
func requireNothingLeft(t *testing.T, ctx context.Context, ns, release string) {
	t.Helper()
	_ = env.Client.CoreV1().Secrets(ns).Delete(ctx, "parent-credentials", metav1.DeleteOptions{})
	require.Eventually(t, func() bool {
		left, err := env.Leftovers(ctx, ns)
		return err == nil && len(left) == 0
	}, 30*time.Second, time.Second, "helm uninstall left objects behind in %s", ns)
	left, err := env.ClusterLeftovers(ctx, release)
	require.NoError(t, err)
	require.Empty(t, left, "helm uninstall left cluster-scoped objects behind")
}

func labelNamespace(t *testing.T, ctx context.Context, ns string, labels map[string]string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	require.NoError(t, err)
	_, err = env.Client.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{})
	require.NoError(t, err)
}

// TestRestrictedNamespaceFailsFast: with trust distribution on, a namespace that enforces the restricted Pod
// Security level cannot admit the trust agent. The install fails within seconds, naming the namespace's level,
// the privileged label and trustDistribution.enabled=false, and the failed release uninstalls cleanly.
func TestRestrictedNamespaceFailsFast(t *testing.T) {
	requireEnv(t)
	for _, bin := range []string{"helm3", "helm4"} {
		t.Run(bin, func(t *testing.T) {
			ctx := context.Background()
			ns := "cr-e2e-pss-" + bin
			site, err := env.PrepareBYOCSite(ctx, ns, "cr", false)
			require.NoError(t, err)
			t.Cleanup(site.Cleanup)
			t.Cleanup(func() {
				if t.Failed() {
					env.Dump(context.Background(), ns)
				}
			})
			labelNamespace(t, ctx, ns, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
			helm := framework.HelmCLI{Bin: bin}
			start := time.Now()
			out, err := helm.Helm(ctx, env, "install", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "2m", "-f", site.ValuesFile)
			took := time.Since(start)
			require.Error(t, err, out)
			t.Logf("%s: install failed after %s:\n%s", bin, took.Round(100*time.Millisecond), out)
			require.Less(t, took, 45*time.Second, "the verdict must come within seconds, not at the end of Helm's timeout")
			for _, want := range []string{"pod-security.kubernetes.io/enforce", "restricted", "privileged", "trustDistribution.enabled=false"} {
				if bin == "helm4" {
					require.Contains(t, out, want, "helm v4 prints the failed hook's log")
				}
				require.Contains(t, preflightMessage(t, ctx, ns), want)
			}

			out, err = helm.Helm(ctx, env, "uninstall", "cr", "-n", ns, "--wait", "--timeout", "2m")
			require.NoError(t, err, "the uninstall of the failed release must succeed:\n%s", out)
			requireNothingLeft(t, ctx, ns, "cr")
		})
	}
}

// preflightMessage is the termination message of the release's preflight pod.
func preflightMessage(t *testing.T, ctx context.Context, ns string) string {
	t.Helper()
	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=preflight"})
	require.NoError(t, err)
	require.NotEmpty(t, pods.Items, "the failed preflight pod is kept for kubectl logs")
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Terminated != nil {
				return cs.State.Terminated.Message
			}
		}
	}
	t.Fatalf("no preflight pod terminated")
	return ""
}

// TestFailedReleasesLeaveNothingBehind follows the sequences that leaked: a release that failed before writing
// anything (its clusterIP held by another release) uninstalls cleanly and leaves the other release's node entry
// alone; an upgrade to a clusterIP that another Service holds says it is taken; the failed preflight stays while
// the release exists; and after a failed upgrade to another address the uninstall removes the entry the release
// really wrote.
func TestFailedReleasesLeaveNothingBehind(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	nsA, nsB := "cr-e2e-leak-a", "cr-e2e-leak-b"
	siteA, err := env.PrepareBYOCSite(ctx, nsA, "cr", false)
	require.NoError(t, err)
	t.Cleanup(siteA.Cleanup)
	siteB, err := env.PrepareBYOCSite(ctx, nsB, "crb", false)
	require.NoError(t, err)
	t.Cleanup(siteB.Cleanup)
	helm3, helm4 := framework.HelmCLI{Bin: "helm3"}, framework.HelmCLI{Bin: "helm4"}
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), nsA)
			env.Dump(context.Background(), nsB)
			_, _ = helm3.Helm(context.Background(), env, "uninstall", "cr", "-n", nsA, "--wait")
		}
	})
	require.NoDirExists(t, framework.NodeEntry, "an earlier run left the node's entry behind")

	out, err := helm3.Helm(ctx, env, "install", "cr", env.Chart, "-n", nsA, "--wait", "--timeout", "3m", "-f", siteA.ValuesFile)
	require.NoError(t, err, out)
	_, err = env.WaitNodeCA(ctx, env.CA.CertPEM, time.Minute)
	require.NoError(t, err)
	markerA, err := os.ReadFile(filepath.Join(framework.NodeEntry, ".connected-registry.json"))
	require.NoError(t, err)

	// Release B asks for A's address: it fails in preflight, and its uninstall succeeds and leaves A's entry.
	out, err = helm3.Helm(ctx, env, "install", "crb", env.Chart, "-n", nsB, "--wait", "--timeout", "2m", "-f", siteB.ValuesFile)
	require.Error(t, err, out)
	require.Contains(t, preflightMessage(t, ctx, nsB), "is taken by Service "+nsA+"/cr-connected-registry")
	out, err = helm3.Helm(ctx, env, "uninstall", "crb", "-n", nsB, "--wait", "--timeout", "2m")
	require.NoError(t, err, "the uninstall of a release that wrote nothing must succeed:\n%s", out)
	requireNothingLeft(t, ctx, nsB, "crb")
	still, err := os.ReadFile(filepath.Join(framework.NodeEntry, ".connected-registry.json"))
	require.NoError(t, err, "release B's cleanup must leave release A's entry")
	require.Equal(t, markerA, still)

	// An upgrade of A to an address another Service holds: the message says it is taken. With
	// --rollback-on-failure the release goes back to its last good revision, and the failed preflight stays for
	// kubectl logs while the release exists.
	holder := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "holder", Namespace: nsB},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.61", Ports: []corev1.ServicePort{{Port: 80}}},
	}
	_, err = env.Client.CoreV1().Services(nsB).Create(ctx, holder, metav1.CreateOptions{})
	require.NoError(t, err)
	out, err = helm4.Helm(ctx, env, "upgrade", "cr", env.Chart, "-n", nsA, "--wait", "--timeout", "2m", "--rollback-on-failure",
		"-f", siteA.ValuesFile, "--set", `service\.clusterIP=10.96.0.61`) // the flat key, as the site file gives it
	require.Error(t, err, out)
	msg := preflightMessage(t, ctx, nsA)
	require.Contains(t, msg, "10.96.0.61 is taken by Service "+nsB+"/holder", "the message says the address is taken")
	require.Contains(t, msg, "cannot change")
	require.NoError(t, env.Client.CoreV1().Services(nsB).Delete(ctx, "holder", metav1.DeleteOptions{}))
	_, err = env.Client.BatchV1().Jobs(nsA).Get(ctx, "cr-connected-registry-preflight", metav1.GetOptions{})
	require.NoError(t, err, "the failed preflight Job stays while the release exists")

	// A plain failed upgrade to another free address: the last revision's values name 10.96.0.62, but the release
	// wrote 10.96.0.50's entry, and its uninstall removes that one.
	out, err = helm3.Helm(ctx, env, "upgrade", "cr", env.Chart, "-n", nsA, "--wait", "--timeout", "2m",
		"-f", siteA.ValuesFile, "--set", `service\.clusterIP=10.96.0.62`)
	require.Error(t, err, out)
	require.Contains(t, preflightMessage(t, ctx, nsA), "cannot change")
	out, err = helm3.Helm(ctx, env, "uninstall", "cr", "-n", nsA, "--wait", "--timeout", "3m")
	require.NoError(t, err, out)
	require.NoDirExists(t, framework.NodeEntry, "the uninstall must remove the entry the release wrote")
	requireNothingLeft(t, ctx, nsA, "cr")
}

// TestResourceQuotaNamespace: in a namespace with a ResourceQuota on CPU and memory and no LimitRange, every pod
// the chart makes, the per-node trust-remove pods included, is admitted: the install works, and the uninstall
// removes the node's entry.
func TestResourceQuotaNamespace(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := "cr-e2e-quota"
	site, err := env.PrepareBYOCSite(ctx, ns, "cr", false)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	helm := framework.HelmCLI{Bin: "helm3"}
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
			_, _ = helm.Helm(context.Background(), env, "uninstall", "cr", "-n", ns, "--wait")
		}
	})
	require.NoDirExists(t, framework.NodeEntry, "an earlier run left the node's entry behind")
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "site-quota", Namespace: ns},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourcePods:           resource.MustParse("20"),
			corev1.ResourceRequestsCPU:    resource.MustParse("4"),
			corev1.ResourceRequestsMemory: resource.MustParse("8Gi"),
			corev1.ResourceLimitsMemory:   resource.MustParse("16Gi"),
		}},
	}
	_, err = env.Client.CoreV1().ResourceQuotas(ns).Create(ctx, quota, metav1.CreateOptions{})
	require.NoError(t, err)

	out, err := helm.Helm(ctx, env, "install", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile)
	require.NoError(t, err, out)
	_, err = env.WaitNodeCA(ctx, env.CA.CertPEM, time.Minute)
	require.NoError(t, err)
	out, err = helm.Helm(ctx, env, "uninstall", "cr", "-n", ns, "--wait", "--timeout", "3m")
	require.NoError(t, err, "the cleanup's pods must be admitted under the quota:\n%s", out)
	require.NoDirExists(t, framework.NodeEntry, "the uninstall must remove the node's entry")
	require.NoError(t, env.Client.CoreV1().ResourceQuotas(ns).Delete(ctx, "site-quota", metav1.DeleteOptions{}))
	requireNothingLeft(t, ctx, ns, "cr")
}

// TestPreflightWarningsAreSeen: a certificate inside its renewal window installs, and the preflight's warning
// reaches the places users look: an Event on the release's Service, the NOTES' pointer to it, and Helm 4's output.
func TestPreflightWarningsAreSeen(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := "cr-e2e-warn"
	site, err := env.PrepareBYOCSite(ctx, ns, "cr", true)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	helm := framework.HelmCLI{Bin: "helm4"}
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
		}
		_, _ = helm.Helm(context.Background(), env, "uninstall", "cr", "-n", ns, "--wait")
	})

	// A certificate from the site's CA, 20 hours into its 24: inside the last third of its life.
	keyDER, err := x509.MarshalECPrivateKey(env.CA.Key)
	require.NoError(t, err)
	ca, err := certs.ParsePair(env.CA.CertPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	require.NoError(t, err)
	spec, err := certs.ParseKeySpec("ECDSA", 256)
	require.NoError(t, err)
	svc := "cr-connected-registry"
	aging, err := certs.Issue(rand.Reader, ca, certs.Request{Key: spec, IPs: []netip.Addr{netip.MustParseAddr(framework.ClusterIP)},
		DNSNames: []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}, Duration: 24 * time.Hour},
		time.Now().Add(-20*time.Hour))
	require.NoError(t, err)
	b64 := base64.StdEncoding.EncodeToString
	agingValues := valuesFile(t, map[string]any{"tls.crt": b64(aging.CertPEM), "tls.key": b64(aging.KeyPEM)})

	out, err := helm.Helm(ctx, env, "install", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile, "-f", agingValues)
	require.NoError(t, err, out)
	t.Logf("helm4 install:\n%s", out)
	require.Contains(t, out, "renew it soon", "Helm 4 prints the preflight's warning")
	require.Contains(t, out, "kubectl -n "+ns+" get events --field-selector involvedObject.kind=Service,involvedObject.name="+svc,
		"the NOTES say where the warnings are")
	events, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Service,involvedObject.name=" + svc + ",reason=PreflightWarning"})
	require.NoError(t, err)
	var found bool
	for _, ev := range events.Items {
		found = found || (ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Message, "renew it soon"))
	}
	require.True(t, found, "an Event on Service %s/%s holds the preflight's warning: %v", ns, svc, events.Items)
}

// TestBadInputFailsClearly: a certificate of megabytes fails at render, naming the value and its cap, before any
// object exists; a tls.secret that lives in another namespace is named there; and the preflight's input Secret,
// which holds tls.key, does not outlive an install whose Helm was killed before its Job ran.
func TestBadInputFailsClearly(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := "cr-e2e-input"
	site, err := env.PrepareBYOCSite(ctx, ns, "cr", true)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
		}
	})

	// Megabytes pasted into tls.crt.
	huge := valuesFile(t, map[string]any{"tls.crt": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("-----BEGIN CERTIFICATE-----\n"), 60000))})
	for _, bin := range []string{"helm3", "helm4"} {
		out, err := framework.HelmCLI{Bin: bin}.Helm(ctx, env, "install", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "1m", "-f", site.ValuesFile, "-f", huge)
		require.Error(t, err, out)
		require.Contains(t, out, "tls.crt is ", bin)
		require.Contains(t, out, "more than the ", bin)
		require.NotContains(t, out, "Too long", "%s: the render must catch it before Kubernetes does", bin)
		_, _ = framework.HelmCLI{Bin: bin}.Helm(ctx, env, "uninstall", "cr", "-n", ns, "--wait")
		requireNothingLeftKeepCredentials(t, ctx, ns)
	}

	// tls.secret names a Secret that exists, but in another namespace.
	other := ns + "-other"
	_, err = env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Namespaces().Delete(context.Background(), other, metav1.DeleteOptions{})
	})
	certPEM, keyPEM, err := env.CA.Issue(framework.ClusterIP, nil, nil)
	require.NoError(t, err)
	_, err = env.Client.CoreV1().Secrets(other).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "k8secret"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": env.CA.CertPEM},
	}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	secretValues := valuesFile(t, map[string]any{"tls.secret": "k8secret", "tls.crt": "", "tls.key": "", "tls.cacrt": ""})
	helm := framework.HelmCLI{Bin: "helm3"}
	out, err := helm.Helm(ctx, env, "install", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "1m", "-f", site.ValuesFile, "-f", secretValues)
	require.Error(t, err, out)
	require.Contains(t, out, "tls.secret names Secret k8secret, which is not in the release namespace "+ns+" but exists in namespace "+other,
		"the render says where the Secret is, before any object is created")
	requireNothingLeftKeepCredentials(t, ctx, ns)

	// Helm killed while it waits for the preflight Job, which cannot start (the namespace's quota admits no pod):
	// the uninstall removes the input Secret with the private key.
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "no-pods", Namespace: ns},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}}
	_, err = env.Client.CoreV1().ResourceQuotas(ns).Create(ctx, quota, metav1.CreateOptions{})
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(env.Root, "bin", "helm3"), "install", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "5m",
		"-f", site.ValuesFile, "--kubeconfig", env.Kubeconfig)
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool {
		_, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-preflight", metav1.GetOptions{})
		return err == nil
	}, time.Minute, 200*time.Millisecond, "helm creates the preflight's input Secret")
	require.Eventually(t, func() bool {
		_, err := env.Client.BatchV1().Jobs(ns).Get(ctx, "cr-connected-registry-preflight", metav1.GetOptions{})
		return err == nil
	}, time.Minute, 200*time.Millisecond, "helm creates the preflight Job")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	// The Job that never ran goes, as its deadline would end it; then the quota, so the uninstall's hooks can run.
	background := metav1.DeletePropagationBackground
	require.NoError(t, env.Client.BatchV1().Jobs(ns).Delete(ctx, "cr-connected-registry-preflight", metav1.DeleteOptions{PropagationPolicy: &background}))
	require.NoError(t, env.Client.CoreV1().ResourceQuotas(ns).Delete(ctx, "no-pods", metav1.DeleteOptions{}))
	out, err = helm.Helm(ctx, env, "uninstall", "cr", "-n", ns, "--wait", "--timeout", "2m")
	require.NoError(t, err, out)
	_, err = env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-preflight", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "the preflight's input Secret (it holds tls.key) must not outlive the release: %v", err)
	requireNothingLeftKeepCredentials(t, ctx, ns)
}

// requireNothingLeftKeepCredentials is requireNothingLeft for a site whose parent-credentials Secret is still
// needed by a later install.
func requireNothingLeftKeepCredentials(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	var left []string
	require.Eventually(t, func() bool {
		all, err := env.Leftovers(ctx, ns)
		if err != nil {
			return false
		}
		left = nil
		for _, o := range all {
			if o != "Secret/parent-credentials" {
				left = append(left, o)
			}
		}
		return len(left) == 0
	}, 30*time.Second, time.Second, "objects left behind in %s", ns)
	cl, err := env.ClusterLeftovers(ctx, "cr")
	require.NoError(t, err)
	require.Empty(t, cl)
}

// TestPodsHoldOnlyTheirPowers: the registry container cannot reach the tls-reloader's API token (no shared
// process namespace), and a trust agent's token can neither change the CA bundle every node trusts nor write
// another node's acknowledgement.
func TestPodsHoldOnlyTheirPowers(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := "cr-e2e-powers"
	site, err := env.PrepareBYOCSite(ctx, ns, "cr", false)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	helm := framework.HelmCLI{Bin: "helm3"}
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
		}
		_, _ = helm.Helm(context.Background(), env, "uninstall", "cr", "-n", ns, "--wait")
	})
	out, err := helm.Helm(ctx, env, "install", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile)
	require.NoError(t, err, out)
	_, err = env.WaitNodeCA(ctx, env.CA.CertPEM, time.Minute)
	require.NoError(t, err)

	// The registry container's own view of processes, read from the node through its root: no process it can
	// see holds an API token, its own root included.
	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=registry"})
	require.NoError(t, err)
	require.Len(t, pods.Items, 1)
	registryPID, err := framework.ContainerPID(string(pods.Items[0].UID), "registry", "serve")
	require.NoError(t, err)
	root := filepath.Join("/proc", registryPID, "root")
	const token = "var/run/secrets/kubernetes.io/serviceaccount/token"
	require.NoFileExists(t, filepath.Join(root, token), "the registry container mounts no token")
	visible, err := os.ReadDir(filepath.Join(root, "proc"))
	require.NoError(t, err)
	var seen []string
	for _, p := range visible {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(root, "proc", p.Name(), "cmdline"))
		seen = append(seen, p.Name()+":"+strings.ReplaceAll(string(cmdline), "\x00", " "))
		_, err := os.Stat(filepath.Join(root, "proc", p.Name(), "root", token))
		require.Error(t, err, "the registry container sees process %s (%s), whose root holds an API token", p.Name(), cmdline)
	}
	t.Logf("processes the registry container sees: %q", seen)

	// A trust agent's own token, bound to its pod and so to its node.
	agents, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=trust-agent"})
	require.NoError(t, err)
	require.NotEmpty(t, agents.Items)
	agent := agents.Items[0]
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, agent.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: agent.Name, UID: agent.UID}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	cfg := rest.AnonymousClientConfig(env.REST)
	cfg.BearerToken = tr.Status.Token
	as, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)

	bundle := "cr-connected-registry-trust-bundle"
	_, err = as.CoreV1().ConfigMaps(ns).Get(ctx, bundle, metav1.GetOptions{})
	require.NoError(t, err, "an agent reads the bundle")
	_, err = as.CoreV1().ConfigMaps(ns).Patch(ctx, bundle, types.MergePatchType, []byte(`{"data":{"ca.crt":"injected"}}`), metav1.PatchOptions{})
	require.True(t, apierrors.IsForbidden(err), "an agent must not change the CA every node trusts: %v", err)
	cm, err := as.CoreV1().ConfigMaps(ns).Get(ctx, bundle, metav1.GetOptions{})
	require.NoError(t, err)
	cm.Data["ca.crt"] = "injected"
	_, err = as.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	require.True(t, apierrors.IsForbidden(err), "an agent must not change the CA every node trusts: %v", err)

	forged := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "cr-connected-registry-trust-ack-forged", Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/instance": "cr", "app.kubernetes.io/component": "trust-ack"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptrTo("some-other-node")},
	}
	_, err = as.CoordinationV1().Leases(ns).Create(ctx, forged, metav1.CreateOptions{})
	require.Error(t, err, "an agent must not acknowledge for another node")
	t.Logf("forged acknowledgement refused: %v", err)
}

func ptrTo[T any](v T) *T { return &v }
