package e2e_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/connected-registry/connected-registry/internal/testing/testenv"
	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// TestTrustDistribution follows one site through the node agent's life with the helm v3 CLI: without the agent
// the node refuses the registry's certificate; turning it on makes the node pull, without containerd restarting;
// a new CA reaches the node within 60 s; a node that leaves the selection loses its agent; and uninstall removes
// the entry and nothing else from certs.d.
func TestTrustDistribution(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns, release := "cr-e2e-trust", "cr"
	helm := framework.HelmCLI{Bin: "helm3"}
	site, err := env.PrepareBYOCSite(ctx, ns, release, false)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
			_, _ = helm.Helm(context.Background(), env, "uninstall", release, "-n", ns, "--wait")
		}
	})
	require.NoDirExists(t, framework.NodeEntry, "an earlier run left the node's entry behind")

	// Someone else's entry in certs.d, which nothing of ours may touch.
	foreign := filepath.Join(framework.CertsDir, "foreign.example:5000")
	require.NoError(t, os.MkdirAll(foreign, 0o755))
	t.Cleanup(func() { _ = os.RemoveAll(foreign) })
	foreignHosts := []byte("server = \"https://foreign.example:5000\"\n")
	require.NoError(t, os.WriteFile(filepath.Join(foreign, "hosts.toml"), foreignHosts, 0o644))
	before, err := framework.ContainerdPID()
	require.NoError(t, err)

	// The node label that useNodeSelector selects, on the only node.
	nodes, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	node := nodes.Items[0].Name
	label := func(on bool) {
		patch := `{"metadata":{"labels":{"containerd-configured-by":null}}}`
		if on {
			patch = `{"metadata":{"labels":{"containerd-configured-by":"connected-registry"}}}`
		}
		_, err := env.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		require.NoError(t, err)
	}
	label(true)
	t.Cleanup(func() { label(false) })

	// 1. The registry without the agent: the node does not trust it.
	out, err := helm.Helm(ctx, env, "install", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile,
		"--set", "trustDistribution.enabled=false")
	require.NoError(t, err, out)
	_, err = env.WaitServing(ctx)
	require.NoError(t, err)
	msg, err := env.PullFails(ctx, ns)
	require.NoError(t, err)
	require.Contains(t, msg, "x509: certificate signed by unknown authority")
	require.NoDirExists(t, framework.NodeEntry)

	// 2. Turning trust distribution on (only on labelled nodes) makes the node pull; containerd keeps running.
	tctx, stopTimeline := context.WithCancel(ctx)
	tl := framework.StartTimeline(tctx, map[string]func() bool{"node trusts the CA": func() bool { return framework.NodeHasCA(env.CA.CertPEM) }})
	out, err = helm.Helm(ctx, env, "upgrade", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile,
		"--set", "trustDistribution.useNodeSelector=true")
	require.NoError(t, err, out)
	took, err := tl.Wait("node trusts the CA", time.Minute)
	stopTimeline()
	require.NoError(t, err)
	t.Logf("MEASURE install of trust distribution (helm upgrade start) until trust is in place on the node: %s", took.Round(100*time.Millisecond))
	pulled, pullTook, err := env.PullThrough(ctx, ns)
	require.NoError(t, err)
	require.Contains(t, pulled, "hello from")
	t.Logf("pull through the registry with the agent's trust: %s", pullTook.Round(100*time.Millisecond))
	ds, err := env.Client.AppsV1().DaemonSets(ns).Get(ctx, release+"-connected-registry-trust-agent", metav1.GetOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 1, ds.Status.NumberReady, "the agent is Ready: trust is in place and containerd uses it")
	events, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=TrustInPlace"})
	require.NoError(t, err)
	require.True(t, hasEvent(events.Items, "node "+node+": "+framework.NodeEntry+" holds CA"), "the agent reports the node's state as an Event")

	// 3. A new CA: the node trusts it within 60 s, keeping the old one for the grace period, and pulls go on.
	// The certificate from the new CA is served only after the node trusts that CA, and without anyone
	// restarting anything.
	rotated, err := testenv.NewCA("rotated CA")
	require.NoError(t, err)
	rotatedValues, rotatedLeaf := certificateValues(t, rotated)
	secretHas := func(caPEM []byte) func() bool {
		return func() bool {
			s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, release+"-connected-registry-tls", metav1.GetOptions{})
			return err == nil && string(s.Data["ca.crt"]) == string(caPEM)
		}
	}
	tctx, stopTimeline = context.WithCancel(ctx)
	tl = framework.StartTimeline(tctx, map[string]func() bool{
		"secret": secretHas(rotated.CertPEM),
		"node":   func() bool { return framework.NodeHasCA(rotated.CertPEM) },
		"served": func() bool { return framework.Serves(rotatedLeaf.SerialNumber) },
	})
	defer stopTimeline()
	out, err = helm.Helm(ctx, env, "upgrade", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile,
		"-f", rotatedValues, "--set", "trustDistribution.useNodeSelector=true")
	require.NoError(t, err, out)
	secretAt, err := tl.Wait("secret", time.Minute)
	require.NoError(t, err)
	nodeAt, err := tl.Wait("node", 90*time.Second)
	require.NoError(t, err)
	servedAt, err := tl.Wait("served", 3*time.Minute)
	require.NoError(t, err)
	t.Logf("MEASURE CA change (Secret updated) until the node trusts the new CA: %s; until its certificate is served: %s",
		(nodeAt - secretAt).Round(100*time.Millisecond), (servedAt - secretAt).Round(100*time.Millisecond))
	assert.Less(t, nodeAt-secretAt, 60*time.Second, "the node must have the new CA within 60 s")
	assert.Greater(t, servedAt, nodeAt, "the node trusts the new CA before its certificate is served")
	require.True(t, framework.NodeHasCA(env.CA.CertPEM), "the replaced CA stays trusted for trustDistribution.previousCAGrace")
	pulled, _, err = env.PullThrough(ctx, ns)
	require.NoError(t, err)
	require.Contains(t, pulled, "hello from")

	// A renewed certificate from the same CA, as cert-manager or certgen renew it, is served without a restart
	// by hand; the node's trust does not change.
	renewedValues, renewedLeaf := certificateValues(t, rotated)
	tctx, stopTimeline = context.WithCancel(ctx)
	tl = framework.StartTimeline(tctx, map[string]func() bool{
		"secret": func() bool {
			s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, release+"-connected-registry-tls", metav1.GetOptions{})
			block, _ := pem.Decode(s.Data["tls.crt"])
			return err == nil && block != nil && bytes.Equal(block.Bytes, renewedLeaf.Raw)
		},
		"served": func() bool { return framework.Serves(renewedLeaf.SerialNumber) },
	})
	defer stopTimeline()
	out, err = helm.Helm(ctx, env, "upgrade", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile,
		"-f", renewedValues, "--set", "trustDistribution.useNodeSelector=true")
	require.NoError(t, err, out)
	secretAt, err = tl.Wait("secret", time.Minute)
	require.NoError(t, err)
	servedAt, err = tl.Wait("served", 3*time.Minute)
	require.NoError(t, err)
	t.Logf("MEASURE leaf renewal: the registry serves the renewed certificate %s after the Secret changed (%s after helm upgrade started)",
		(servedAt - secretAt).Round(100*time.Millisecond), servedAt.Round(100*time.Millisecond))
	pulled, _, err = env.PullThrough(ctx, ns)
	require.NoError(t, err)
	require.Contains(t, pulled, "hello from")

	// 4. The node leaves the selection: its agent goes, its entry stays until uninstall.
	label(false)
	require.Eventually(t, func() bool {
		pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=trust-agent"})
		return err == nil && len(pods.Items) == 0
	}, time.Minute, 500*time.Millisecond, "no agent may run on a node without the label")
	require.DirExists(t, framework.NodeEntry, "a stopped agent leaves trust in place")

	// 5. Uninstall removes the entry, exactly, and nothing else; no object is left, containerd never restarted.
	out, err = helm.Helm(ctx, env, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
	require.NoError(t, err, out)
	require.NoDirExists(t, framework.NodeEntry)
	got, err := os.ReadFile(filepath.Join(foreign, "hosts.toml"))
	require.NoError(t, err)
	require.Equal(t, foreignHosts, got)
	require.NoError(t, env.Client.CoreV1().Secrets(ns).Delete(ctx, "parent-credentials", metav1.DeleteOptions{}))
	left, err := env.Leftovers(ctx, ns)
	require.NoError(t, err)
	require.Empty(t, left, "helm uninstall left objects behind")
	clusterLeft, err := env.ClusterLeftovers(ctx, release)
	require.NoError(t, err)
	require.Empty(t, clusterLeft)
	after, err := framework.ContainerdPID()
	require.NoError(t, err)
	require.Equal(t, before, after, "containerd was restarted")
}

// certificateValues writes the flat BYOC keys of a certificate for the site, signed by ca, and returns the file
// and the certificate.
func certificateValues(t *testing.T, ca *testenv.CA) (string, *x509.Certificate) {
	t.Helper()
	svc := "cr-connected-registry"
	certPEM, keyPEM, err := ca.Issue(framework.ClusterIP, []net.IP{net.ParseIP(framework.ClusterIP)},
		[]string{svc, svc + ".cr-e2e-trust", svc + ".cr-e2e-trust.svc", svc + ".cr-e2e-trust.svc.cluster.local"})
	require.NoError(t, err)
	b64 := base64.StdEncoding.EncodeToString
	data, err := json.Marshal(map[string]any{"tls.crt": b64(certPEM), "tls.key": b64(keyPEM), "tls.cacrt": b64(ca.CertPEM)})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "certificate.json")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return file, leaf
}

func hasEvent(events []corev1.Event, message string) bool {
	for _, e := range events {
		if strings.HasPrefix(e.Message, message) {
			return true
		}
	}
	return false
}
