package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// badCertificateValues writes a values file whose certificate does not hold the ClusterIP: the most common BYOC
// mistake, a certificate made for another address.
func badCertificateValues(t *testing.T) string {
	t.Helper()
	certPEM, keyPEM, err := env.CA.Issue("10.96.0.99", []net.IP{net.ParseIP("10.96.0.99")}, nil)
	require.NoError(t, err)
	b64 := base64.StdEncoding.EncodeToString
	data, err := json.Marshal(map[string]any{"tls.crt": b64(certPEM), "tls.key": b64(keyPEM)})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "bad-certificate.json")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	return file
}

const wantSANMessage = "tls.crt does not hold the ClusterIP 10.96.0.50 in its subject alternative names"

// TestBadCertificateFailsInstallFast: a BYOC certificate without the ClusterIP fails `helm install` within
// 30 s, through the preflight hook, with a message that names the value and the fix, where each helm shows it.
func TestBadCertificateFailsInstallFast(t *testing.T) {
	requireEnv(t)
	for _, bin := range []string{"helm3", "helm4"} {
		t.Run(bin, func(t *testing.T) {
			ctx := context.Background()
			ns := "cr-e2e-bad-" + bin
			site, err := env.PrepareBYOCSite(ctx, ns, "cr", true)
			require.NoError(t, err)
			t.Cleanup(site.Cleanup)
			helm := framework.HelmCLI{Bin: bin}
			start := time.Now()
			out, err := helm.Helm(ctx, env, "install", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "2m",
				"-f", site.ValuesFile, "-f", badCertificateValues(t))
			took := time.Since(start)
			require.Error(t, err, out)
			t.Logf("%s: install failed after %s:\n%s", bin, took.Round(100*time.Millisecond), out)
			require.Less(t, took, 30*time.Second, "the verdict must come within seconds")
			if bin == "helm4" {
				require.Contains(t, out, wantSANMessage, "helm v4 prints the failed hook's log")
			}
			// Both: the Job's termination message holds the verdict, as kubectl shows it.
			pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=preflight"})
			require.NoError(t, err)
			require.NotEmpty(t, pods.Items, "the failed preflight pod is kept for kubectl logs")
			term := pods.Items[0].Status.ContainerStatuses[0].State.Terminated
			require.NotNil(t, term)
			require.Contains(t, term.Message, wantSANMessage)
			_, _ = helm.Helm(ctx, env, "uninstall", "cr", "-n", ns)
		})
	}
}

// TestFailedUpgradeKeepsTheRunningRelease: an upgrade with a bad certificate fails in preflight, before any
// object of the good release is touched, which keeps serving.
func TestFailedUpgradeKeepsTheRunningRelease(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := "cr-e2e-upgrade"
	site, err := env.PrepareBYOCSite(ctx, ns, "cr", true)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	helm := framework.HelmCLI{Bin: "helm3"}
	out, err := helm.Helm(ctx, env, "install", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile)
	require.NoError(t, err, out)
	t.Cleanup(func() { _, _ = helm.Helm(context.Background(), env, "uninstall", "cr", "-n", ns, "--wait") })
	before, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
	require.NoError(t, err)
	_, _, err = env.PullThrough(ctx, ns)
	require.NoError(t, err)

	out, err = helm.Helm(ctx, env, "upgrade", "cr", env.Chart, "-n", ns, "--wait", "--timeout", "2m",
		"-f", site.ValuesFile, "-f", badCertificateValues(t))
	require.Error(t, err, out)
	require.True(t, strings.Contains(out, "pre-upgrade") || strings.Contains(out, "preflight"), out)

	after, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, before.Data, after.Data, "the good certificate is untouched")
	resp, err := env.WaitServing(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out, _, err = env.PullThrough(ctx, ns)
	require.NoError(t, err, "the running release still serves pulls")
	require.Contains(t, out, "hello from")
}
