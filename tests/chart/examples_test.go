package chart_test

import (
	"crypto/rand"
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// TestExamples renders every examples/ scenario, filled in as a user would, and checks the TLS source and the
// trust agent each one chooses. The end-to-end tests install the byoc and k8secret examples for real.
func TestExamples(t *testing.T) {
	t.Parallel()
	spec, err := certs.ParseKeySpec("RSA", 2048)
	require.NoError(t, err)
	now := time.Now()
	self, err := certs.NewCA(rand.Reader, certs.Request{Key: spec, CommonName: "connected-registry", IPs: []netip.Addr{netip.MustParseAddr(testClusterIP)}, Duration: 365 * 24 * time.Hour}, now)
	require.NoError(t, err)
	vars := map[string]string{
		"SERVICE_IP":        testClusterIP,
		"CONNECTION_STRING": "ConnectedRegistryName=site1;SyncTokenName=site1-token;SyncTokenPassword=secret;ParentGatewayEndpoint=myregistry.westus2.data.azurecr.io;ParentEndpointProtocol=https",
		"TLS_CRT":           base64.StdEncoding.EncodeToString(self.CertPEM),
		"TLS_KEY":           base64.StdEncoding.EncodeToString(self.KeyPEM),
	}
	for _, tc := range []struct {
		example, source string
		trust           bool
	}{
		{"default", "cert-manager", true},
		{"cert-manager-preinstalled", "cert-manager", true},
		{"byoc", "byoc", true},
		{"k8secret", "secret", true},
		{"own-trust", "cert-manager", false},
		{"generated", "generated", true},
	} {
		t.Run(tc.example, func(t *testing.T) {
			t.Parallel()
			var files []string
			for _, name := range []string{"config.yaml", "protected-settings.json"} {
				b, err := os.ReadFile(filepath.Join(chartrender.RepoRoot(), "examples", tc.example, name))
				require.NoError(t, err)
				var missing []string
				s := os.Expand(string(b), func(k string) string {
					v, ok := vars[k]
					if !ok {
						missing = append(missing, k)
					}
					return v
				})
				require.Empty(t, missing)
				f := filepath.Join(t.TempDir(), name)
				require.NoError(t, os.WriteFile(f, []byte(s), 0o600))
				files = append(files, f)
			}
			apis, err := chartrender.ScenarioAPIVersions(files[0])
			require.NoError(t, err)
			res, err := chartrender.Render(chartrender.Options{ValuesFiles: files, APIVersions: apis})
			require.NoError(t, err)
			d, ok := res.Find("Deployment", "cr-connected-registry")
			require.True(t, ok)
			require.Contains(t, d.YAML, "connected-registry.io/tls-source: "+tc.source)
			_, hasAgent := res.Find("DaemonSet", "cr-connected-registry-trust-agent")
			require.Equal(t, tc.trust, hasAgent)
		})
	}
}

// TestNestedExample renders examples/nested as its README installs it: the parent with client tokens, the child
// with the parent's Service as its parent URL, one of the parent's client tokens as its credentials, and the
// parent's CA.
func TestNestedExample(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"CONNECTION_STRING": "ConnectedRegistryName=regional;SyncTokenName=regional-token;SyncTokenPassword=secret;ParentGatewayEndpoint=myregistry.westus2.data.azurecr.io;ParentEndpointProtocol=https",
		"PARENT_SERVICE_IP": "10.96.0.60",
		"CHILD_SERVICE_IP":  testClusterIP,
	}
	load := func(name string) string {
		b, err := os.ReadFile(filepath.Join(chartrender.RepoRoot(), "examples", "nested", name))
		require.NoError(t, err)
		var missing []string
		s := os.Expand(string(b), func(k string) string {
			v, ok := vars[k]
			if !ok {
				missing = append(missing, k)
			}
			return v
		})
		require.Empty(t, missing)
		f := filepath.Join(t.TempDir(), name)
		require.NoError(t, os.WriteFile(f, []byte(s), 0o600))
		return f
	}
	parent, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{load("parent.yaml")}})
	require.NoError(t, err)
	cfg := registryConfig(t, parent)
	require.Equal(t, "https://10.96.0.60:443/token", cfg["auth"].(map[string]any)["token"].(map[string]any)["realm"])

	child, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{load("child.yaml")},
		Values: map[string]any{"registry": map[string]any{"parent": map[string]any{"caBundle": "-----BEGIN CERTIFICATE-----\nPARENT\n-----END CERTIFICATE-----\n"}}}})
	require.NoError(t, err)
	require.Equal(t, "https://10.96.0.60:443", parentURL(t, child))
	inits, _ := namedList(podSpec(t, child)["initContainers"])
	require.Contains(t, inits, "parent-gate", "the child reaches its parent through the gate")
	_, ok := child.Find("ConfigMap", "cr-connected-registry-parent-ca")
	require.True(t, ok, "the child trusts the parent's CA")
	require.Contains(t, child.YAML(), "secretName: parent-client-token", "the child authenticates with the parent's client token")
}
