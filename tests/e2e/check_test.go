package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/cmd/kubectl-connected_registry/app"
	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/check"
	"github.com/connected-registry/connected-registry/internal/cli"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// runCheck runs `kubectl connected-registry check -o json` with args against the test cluster, in process, and
// returns its report and exit status.
func runCheck(t *testing.T, ctx context.Context, args ...string) (app.Report, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	argv := append([]string{"kubectl-connected_registry", "check", "--kubeconfig", env.Kubeconfig, "-o", "json"}, args...)
	start := time.Now()
	err := app.Execute(ctx, argv, app.Streams{Out: &out, Err: &errOut}, cli.MapEnv(nil))
	var r app.Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &r), "check %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	for _, l := range r.Checks {
		t.Logf("check %s: %s %s: %s (hint: %s)", strings.Join(args, " "), l.Status.Glyph(), l.Check, l.Message, l.Hint)
	}
	t.Logf("check %s took %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return r, app.ExitCode(err)
}

// lineOf returns the report's line of the named check.
func lineOf(t *testing.T, r app.Report, name string) check.Line {
	t.Helper()
	for _, l := range r.Checks {
		if l.Check == name {
			return l
		}
	}
	require.Failf(t, "no line", "the report has no %s line: %+v", name, r.Checks)
	return check.Line{}
}

// TestCheck runs `kubectl connected-registry check` on one real install (generated certificates, trust
// distribution on, the test parent): check --pre passes with the site's values and names the value the hook would
// refuse; after install, check is green; then it names the failing line when the parent is down, when the node's
// acknowledgement of the CA is gone, and when the TLS Secret holds a certificate without the ClusterIP.
func TestCheck(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns, release := "cr-e2e-check", "cr"
	helm := framework.HelmCLI{Bin: "helm3"}
	site, err := env.PrepareGeneratedSite(ctx, ns, release)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
		}
		_, _ = helm.Helm(context.Background(), env, "uninstall", release, "-n", ns, "--wait")
	})
	common := []string{"-n", ns, "--release", release}

	// Before install: the hook's checks from here, with the install's values.
	r, code := runCheck(t, ctx, append(common, "--pre", "--chart", env.Chart, "--protected-settings", site.ValuesFile, "--set", "metrics.enabled=true")...)
	require.Equal(t, 0, code, "check --pre fails on the site's values")
	require.True(t, r.Success)
	r, code = runCheck(t, ctx, append(common, "--pre", "--chart", env.Chart, "--protected-settings", site.ValuesFile,
		"--set", `service\.clusterIP=10.97.0.50`)...)
	require.Equal(t, 1, code)
	l := lineOf(t, r, "cluster-ip")
	require.Equal(t, check.Fail, l.Status)
	require.Contains(t, l.Message, "10.97.0.50")

	out, err := helm.Helm(ctx, env, "install", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile,
		"--set", "metrics.enabled=true")
	require.NoError(t, err, out)

	// Healthy: every line passes; the cache's usage comes from the parent gate's metrics.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, code = runCheck(t, ctx, common...)
		if code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	require.Equal(t, 0, code, "check is not green on a healthy install: %+v", r.Checks)
	for _, name := range []string{app.CheckHelmRelease, check.CheckRegistryReady, check.CheckCertificate, check.CheckParent, check.CheckNodeTrust, check.CheckSync, check.CheckCache} {
		require.Equal(t, check.OK, lineOf(t, r, name).Status, name)
	}
	require.Contains(t, lineOf(t, r, check.CheckParent).Message, "last successful answer", "the parent line reads the gate's metrics")
	require.Equal(t, check.Warn, lineOf(t, r, check.CheckAccess).Status, "pulls are anonymous and no NetworkPolicy narrows them")

	// The parent is down.
	env.StopParent()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = env.StartParentAgain(context.Background())
		}
	})
	r, code = runCheck(t, ctx, common...)
	require.Equal(t, 1, code)
	l = lineOf(t, r, check.CheckParent)
	require.Equal(t, check.Fail, l.Status, "%+v", l)
	require.NotEmpty(t, l.Hint)
	require.NoError(t, env.StartParentAgain(ctx))
	restarted = true

	// The node's acknowledgement is gone: its agent writes it again within a minute, so check right away, and
	// again should the agent's pass have come between the two (a few seconds of its minute).
	nodes, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	node := nodes.Items[0].Name
	for attempt := 1; ; attempt++ {
		require.NoError(t, env.Client.CoordinationV1().Leases(ns).Delete(ctx, (bundle.Acks{Release: release}).Name(node), metav1.DeleteOptions{}))
		r, code = runCheck(t, ctx, common...)
		if code == 1 || attempt == 3 {
			break
		}
		t.Logf("the agent wrote its Lease again before check read it (attempt %d): once more", attempt)
	}
	require.Equal(t, 1, code)
	l = lineOf(t, r, check.CheckNodeTrust)
	require.Equal(t, check.Fail, l.Status, "%+v", l)
	require.Contains(t, l.Message, "node "+node)

	// The TLS Secret holds a certificate whose SANs lack the ClusterIP.
	secret := fmt.Sprintf("%s-connected-registry-tls", release)
	s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
	require.NoError(t, err)
	// Issued by the site's own CA (the certgen hook keeps it in <secret>-ca), so that only the SANs are wrong.
	caSecret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, secret+"-ca", metav1.GetOptions{})
	require.NoError(t, err)
	ca, err := certs.ParsePair(caSecret.Data[corev1.TLSCertKey], caSecret.Data[corev1.TLSPrivateKeyKey])
	require.NoError(t, err)
	spec, err := certs.ParseKeySpec("ECDSA", 256)
	require.NoError(t, err)
	wrong, err := certs.Issue(rand.Reader, ca, certs.Request{Key: spec, IPs: []netip.Addr{netip.MustParseAddr("10.96.0.99")},
		DNSNames: []string{"wrong.example"}, Duration: 24 * time.Hour}, time.Now())
	require.NoError(t, err)
	s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey] = wrong.CertPEM, wrong.KeyPEM
	_, err = env.Client.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	r, code = runCheck(t, ctx, common...)
	require.Equal(t, 1, code)
	l = lineOf(t, r, check.CheckCertificate)
	require.Equal(t, check.Fail, l.Status, "%+v", l)
	require.Contains(t, l.Message, "does not hold the ClusterIP "+framework.ClusterIP)
	require.Contains(t, l.Hint, "the tls-reloader does not install it")

	// The tls-reloader refuses it with an Event nobody would see: check shows it as a warning line.
	deadline = time.Now().Add(time.Minute)
	for refused := false; !refused; {
		r, _ = runCheck(t, ctx, common...)
		for _, l := range r.Checks {
			if l.Check == check.CheckWarnings && strings.HasPrefix(l.Message, "CertificateRefused pod/"+release+"-connected-registry-") {
				require.Equal(t, check.Warn, l.Status)
				require.Contains(t, l.Message, "lack the ClusterIP 10.96.0.50")
				refused = true
			}
		}
		if !refused {
			require.False(t, time.Now().After(deadline), "no warning line for the refused certificate")
			time.Sleep(5 * time.Second)
		}
	}
}
