package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// TestTutorial installs the tutorial's own settings files from examples/, filled in, with each helm CLI: a
// certificate made exactly as the tutorial makes it (openssl req -x509 with the service IP as its only SAN,
// base64 -w0, tls.cacrt equal to tls.crt), and an existing Secret created with kubectl as the tutorial does. The
// parent is named by a connection string; the node agent makes the node trust the certificate; a pod pulls
// through the registry; uninstall leaves nothing of ours, on the node or in the namespace.
func TestTutorial(t *testing.T) {
	requireEnv(t)
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is needed to make the certificate as the tutorial does: apt-get install openssl")
	}
	ctx := context.Background()
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "mycert.crt"), filepath.Join(dir, "mycert.key")
	out, err := exec.CommandContext(ctx, "openssl", "req", "-newkey", "rsa:4096", "-nodes", "-sha256", "-keyout", key,
		"-x509", "-days", "365", "-out", crt, "-subj", "/CN=connected-registry", "-addext", "subjectAltName = IP:"+framework.ClusterIP).CombinedOutput()
	require.NoError(t, err, string(out))
	b64 := func(file string) string {
		out, err := exec.CommandContext(ctx, "base64", "-w0", file).Output()
		require.NoError(t, err)
		return string(out)
	}
	caPEM, err := os.ReadFile(crt)
	require.NoError(t, err)
	vars := map[string]string{"SERVICE_IP": framework.ClusterIP, "CONNECTION_STRING": env.ConnectionString(), "TLS_CRT": b64(crt), "TLS_KEY": b64(key)}

	for _, example := range []string{"byoc", "k8secret"} {
		for _, bin := range []string{"helm3", "helm4"} {
			t.Run(example+"/"+bin, func(t *testing.T) {
				ns, release := "cr-e2e-"+example+"-"+bin, "connected-registry"
				helm := framework.HelmCLI{Bin: bin}
				site, err := env.PrepareExampleSite(ctx, ns, release)
				require.NoError(t, err)
				t.Cleanup(site.Cleanup)
				t.Cleanup(func() {
					if t.Failed() {
						env.Dump(context.Background(), ns)
						_, _ = helm.Helm(context.Background(), env, "uninstall", release, "-n", ns, "--wait")
					}
				})
				if example == "k8secret" {
					out, err := env.Combined(ctx, framework.Kubectl, "--kubeconfig", env.Kubeconfig, "-n", ns, "create", "secret", "generic", "k8secret",
						"--type=kubernetes.io/tls", "--from-file=ca.crt="+crt, "--from-file=tls.crt="+crt, "--from-file=tls.key="+key)
					require.NoError(t, err, out)
				}
				files := []string{}
				for _, name := range []string{"config.yaml", "protected-settings.json"} {
					files = append(files, expandExample(t, filepath.Join(env.Root, "examples", example, name), vars))
				}
				start := time.Now()
				out, err := helm.Helm(ctx, env, "install", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m",
					"-f", files[0], "-f", files[1], "-f", site.ValuesFile)
				require.NoError(t, err, out)
				t.Logf("%s %s: installed and Ready in %s", example, bin, time.Since(start).Round(100*time.Millisecond))
				_, err = env.WaitNodeCA(ctx, caPEM, time.Minute)
				require.NoError(t, err)
				pulled, took, err := env.PullThrough(ctx, ns)
				require.NoError(t, err)
				require.Contains(t, pulled, "hello from")
				t.Logf("%s %s: pulled through the registry in %s", example, bin, took.Round(100*time.Millisecond))

				out, err = helm.Helm(ctx, env, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
				require.NoError(t, err, out)
				require.NoDirExists(t, framework.NodeEntry)
				for _, own := range []string{"parent-credentials", "k8secret"} {
					_ = env.Client.CoreV1().Secrets(ns).Delete(ctx, own, metav1.DeleteOptions{})
				}
				left, err := env.Leftovers(ctx, ns)
				require.NoError(t, err)
				require.Empty(t, left, "helm uninstall left objects behind")
			})
		}
	}
}

// expandExample fills in an examples/ file's ${NAME}s and fails on any left unfilled.
func expandExample(t *testing.T, path string, vars map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var missing []string
	s := os.Expand(string(b), func(k string) string {
		v, ok := vars[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	require.Empty(t, missing, "%s has placeholders the test does not fill", path)
	out := filepath.Join(t.TempDir(), strings.ReplaceAll(filepath.Base(filepath.Dir(path))+"-"+filepath.Base(path), "/", "-"))
	require.NoError(t, os.WriteFile(out, []byte(s), 0o600))
	return out
}
