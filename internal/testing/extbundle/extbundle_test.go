package extbundle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
const d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"

func TestReadImageLists(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, content, want string
	}{
		{"a line of ci/images build's images.txt should be read", "docker.io/library/registry:3 " + d1 + " registry.tar\n", ""},
		{"a line without archive should be read", "# pinned\n\nquay.io/jetstack/cert-manager-controller:v1.21.2 " + d2 + "\n", ""},
		{"a tag instead of a digest should fail", "docker.io/library/registry:3 3 registry.tar\n", `an images file holds lines "REF DIGEST [ARCHIVE]"`},
		{"one reference with two digests should fail", "a/b:1 " + d1 + "\na/b:1 " + d2 + "\n", "a/b:1 has two digests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := filepath.Join(t.TempDir(), "images.txt")
			require.NoError(t, os.WriteFile(f, []byte(tc.content), 0o644))
			got, err := ReadImageLists(f)
			if tc.want != "" {
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, 1)
		})
	}
}

func TestAzureImages(t *testing.T) {
	t.Parallel()
	images, missing, err := AzureImages(map[string]string{
		"ghcr.io/connected-registry/connected-registry:0.1.0": d1,
		"docker.io/library/registry:3":                        d2,
		"ghcr.io/connected-registry/distribution:v3.1.2":      d2,
		"ghcr.io/connected-registry/testdata/hello:v1":        d1,
		"10.244.0.1:5000/jetstack/cert-manager-webhook:v1":    d1,
	})
	require.NoError(t, err)
	require.Equal(t, AzureImage{Registry: "ghcr.io/connected-registry", Image: "connected-registry", Digest: d1}, images["connectedRegistry"])
	require.Equal(t, AzureImage{Registry: "ghcr.io/connected-registry", Image: "distribution", Digest: d2}, images["registry"], "the project's own name before Docker Hub's")
	require.Equal(t, AzureImage{Registry: "10.244.0.1:5000/jetstack", Image: "cert-manager-webhook", Digest: d1}, images["certManagerWebhook"])
	require.Equal(t, []string{"acrConnectedRegistry", "certManagerController", "certManagerCainjector", "certManagerAcmesolver", "certManagerStartupapicheck"}, missing)
	require.Equal(t, "ghcr.io/connected-registry/distribution@"+d2, images["registry"].Ref())
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	tmpl, err := LoadTemplate(filepath.Join(chartrender.RepoRoot(), SourceDir, MainTemplateFile))
	require.NoError(t, err)
	_, err = tmpl.Evaluate(map[string]string{"connectionString": "x"})
	require.ErrorIs(t, err, ErrMissingParameter)
	require.ErrorContains(t, err, "serviceClusterIP")
	_, err = tmpl.Evaluate(map[string]string{"connectionString": "x", "serviceClusterIP": "10.0.0.1", "certManagerEnabled": "False"})
	require.ErrorContains(t, err, `certManagerEnabled="False" is not one of its allowedValues`)
	got, err := tmpl.Evaluate(map[string]string{"connectionString": "c", "serviceClusterIP": "10.0.0.1", "tlsSecret": "k8secret"})
	require.NoError(t, err)
	require.Equal(t, "cert-manager.enabled=true,cert-manager.install=true,pvc.storageClassName=,pvc.storageRequest=500Gi,service.clusterIP=10.0.0.1,"+
		"trustDistribution.enabled=true,trustDistribution.useNodeSelector=false,connectionString=c,tls.cacrt=,tls.crt=,tls.key=,tls.secret=k8secret",
		strings.Join(got, ","))
}
