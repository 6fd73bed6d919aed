package chart_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

const (
	testConnectionString = "ConnectedRegistryName=edge1;SyncTokenName=edge1-sync-token;SyncTokenPassword=s3cret-password;ParentGatewayEndpoint=contoso.westus2.data.azurecr.io;ParentEndpointProtocol=https"
	testClusterIP        = "10.96.0.50"
)

// base are the values every render needs.
func base() map[string]any {
	return map[string]any{"connectionString": testConnectionString, "service": map[string]any{"clusterIP": testClusterIP}}
}

func with(extra map[string]any) map[string]any {
	v := base()
	for k, val := range extra {
		v[k] = val
	}
	return v
}

func render(t *testing.T, vals map[string]any, apis ...string) (*chartrender.Result, error) {
	t.Helper()
	return chartrender.Render(chartrender.Options{Values: vals, APIVersions: apis})
}

func scenarioValue(t *testing.T, scenario, key string) string {
	t.Helper()
	files, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	vals, err := chartrender.Options{ValuesFiles: []string{files[scenario]}}.MergedValues()
	require.NoError(t, err)
	s, _ := vals[key].(string)
	require.NotEmpty(t, s, "%s has no %s", scenario, key)
	return s
}

func TestRenderErrors(t *testing.T) {
	t.Parallel()
	pemCrt := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	b64Crt := base64.StdEncoding.EncodeToString([]byte(pemCrt))
	tests := []struct {
		name string
		vals map[string]any
		apis []string
		want string
		// hide is a value the error must not show, besides the sync token password.
		hide string
	}{
		{
			name: "a pod label under app.kubernetes.io/ should fail naming the key",
			vals: with(map[string]any{"podLabels": map[string]any{"app.kubernetes.io/name": "x"}}),
			want: "podLabels.app.kubernetes.io/name: labels under app.kubernetes.io/ and helm.sh/ are the chart's own (some select the release's pods); choose another key, for example site.example.com/name",
		},
		{
			name: "tls.crt together with the default cert-manager.enabled=true should fail naming both keys",
			vals: with(map[string]any{"tls.crt": b64Crt, "tls.key": b64Crt}),
			want: "tls.crt and cert-manager.enabled=true both choose the registry certificate: set cert-manager.enabled=false (and cert-manager.install=false) to use your own certificate, or remove tls.crt to let cert-manager issue one",
		},
		{
			name: "tls.secret together with cert-manager.enabled=true should fail naming both keys",
			vals: with(map[string]any{"tls.secret": "k8secret"}),
			want: "tls.secret and cert-manager.enabled=true both choose the registry certificate: set cert-manager.enabled=false (and cert-manager.install=false) to use your own certificate, or remove tls.secret to let cert-manager issue one",
		},
		{
			name: "tls.secret together with tls.crt should fail",
			vals: with(map[string]any{"cert-manager.enabled": false, "tls.secret": "k8secret", "tls.crt": b64Crt, "tls.key": b64Crt}),
			want: "tls.secret and tls.crt/tls.key/tls.cacrt both choose the registry certificate: keep tls.secret to use the existing Secret, or remove it to use the certificate given in tls.crt",
		},
		{
			name: "tls.crt without tls.key should fail",
			vals: with(map[string]any{"cert-manager.enabled": false, "tls.crt": b64Crt}),
			want: "tls.crt is set without tls.key: give the certificate's private key as base64 of its PEM in tls.key",
		},
		{
			name: "tls.key without tls.crt should fail",
			vals: with(map[string]any{"cert-manager.enabled": false, "tls.key": b64Crt}),
			want: "tls.key is set without tls.crt: give the certificate as base64 of its PEM in tls.crt",
		},
		{
			name: "PEM text instead of base64 should fail with the base64 command",
			vals: with(map[string]any{"cert-manager.enabled": false, "tls.crt": pemCrt, "tls.key": b64Crt}),
			want: "tls.crt holds PEM text, but the chart expects it base64-encoded: give the output of `base64 -w0 <file>`",
		},
		{
			name: "base64 applied twice should fail",
			vals: with(map[string]any{"cert-manager.enabled": false, "tls.crt": base64.StdEncoding.EncodeToString([]byte(b64Crt)), "tls.key": b64Crt}),
			want: "tls.crt is base64-encoded twice: decode it once (`base64 -d`) and give the result",
		},
		{
			name: "base64 of something that is not PEM should fail",
			vals: with(map[string]any{"cert-manager.enabled": false, "tls.crt": b64Crt, "tls.key": base64.StdEncoding.EncodeToString([]byte("hello"))}),
			want: `tls.key decodes to something that is not PEM (no "-----BEGIN" line): give base64 of the PEM file`,
		},
		{
			name: "useNodeSelector contradicting skipNodeSelector should fail",
			vals: with(map[string]any{"trustDistribution": map[string]any{"useNodeSelector": true, "skipNodeSelector": true}}),
			want: "trustDistribution.useNodeSelector=true contradicts trustDistribution.skipNodeSelector=true (its older, inverted name): set only useNodeSelector",
		},
		{
			name: "a missing connectionString should fail",
			vals: map[string]any{"service": map[string]any{"clusterIP": testClusterIP}},
			want: "connectionString is required: set it to the output of `az acr connected-registry get-settings` (ConnectedRegistryName=…;SyncTokenName=…;SyncTokenPassword=…;ParentGatewayEndpoint=…;ParentEndpointProtocol=https), or name a parent with registry.parent.url",
		},
		{
			name: "a missing service.clusterIP should fail",
			vals: map[string]any{"connectionString": testConnectionString},
			want: "service.clusterIP is required: set it to a free address inside the cluster's service CIDR, for example --set service.clusterIP=10.96.0.50 (nodes pull from <clusterIP>:443)",
		},
		{
			name: "a connection string without its sync token password should fail without echoing it",
			vals: with(map[string]any{"connectionString": "ConnectedRegistryName=edge1;SyncTokenName=tok;SyncTokenPassword=;ParentGatewayEndpoint=contoso.westus2.data.azurecr.io;ParentEndpointProtocol=https"}),
			want: "connectionString lacks a value for SyncTokenPassword: copy the whole connection string from `az acr connected-registry get-settings --generate-password 1`",
		},
		{
			name: "a connection string broken across lines should fail without echoing it",
			vals: with(map[string]any{"connectionString": strings.Replace(testConnectionString, ";SyncTokenPassword", ";\n SyncTokenPassword", 1)}),
			want: "connectionString contains whitespace (a space, tab or line break between its fields), probably from copying it across lines: give it as one line, exactly as `az acr connected-registry get-settings` prints it",
		},
		{
			name: "a parent endpoint with a scheme should fail naming ParentEndpointProtocol",
			vals: with(map[string]any{"connectionString": strings.Replace(testConnectionString, "ParentGatewayEndpoint=", "ParentGatewayEndpoint=https://", 1)}),
			want: "connectionString has ParentGatewayEndpoint=https://contoso.westus2.data.azurecr.io, but it takes a host[:port] without scheme or path (like myregistry.eastus.data.azurecr.io); the scheme goes in ParentEndpointProtocol",
		},
		{
			name: "tls.secret in typographic quotes copied from the Azure docs should fail with the fix",
			vals: with(map[string]any{"cert-manager.enabled": false, "tls.secret": "“k8secret”"}),
			want: "tls.secret contains typographic quotes (“k8secret”), probably copied from a document: write it as tls.secret=k8secret",
		},
		{
			name: "a private key in typographic quotes should fail without echoing it",
			vals: with(map[string]any{"cert-manager.enabled": false, "tls.crt": b64Crt, "tls.key": "“" + b64Crt + "”"}),
			want: "tls.key contains typographic quotes (“ ” ‘ ’), probably copied from a document: give the output of `base64 -w0 <key file>` without them",
			hide: b64Crt,
		},
		{
			name: "a service.clusterIP in typographic quotes should fail the schema, which checks its format first",
			vals: with(map[string]any{"service": map[string]any{"clusterIP": "“10.96.0.50”"}}),
			want: "clusterIP",
		},
		{
			name: "httpEnabled with the acr engine should fail naming both keys",
			vals: with(map[string]any{"httpEnabled": true, "registry": map[string]any{"engine": "acr", "mode": "ReadWrite"}, "cert-manager": map[string]any{"install": false}}),
			apis: []string{chartrender.CertManagerAPIVersion},
			want: "httpEnabled=true with registry.engine=acr is not supported by this chart: the acr engine serves one port; use registry.engine=distribution",
		},
		{
			name: "a connection string in typographic quotes should fail without echoing it",
			vals: with(map[string]any{"connectionString": "“" + testConnectionString + "”"}),
			want: "connectionString contains typographic quotes (“ ” ‘ ’), probably copied from a document: give the connection string with plain ASCII quotes or none",
		},
		{
			name: "cert-manager.install=false without cert-manager in the cluster should fail",
			vals: with(map[string]any{"cert-manager": map[string]any{"install": false}}),
			want: "cert-manager.enabled=true with cert-manager.install=false needs cert-manager in the cluster, but the API cert-manager.io/v1 is not served: install cert-manager first, or set cert-manager.install=true, or choose another TLS source (tls.secret, tls.crt, or cert-manager.enabled=false for generated certificates). With `helm template`, pass --api-versions cert-manager.io/v1",
		},
		{
			name: "cert-manager.install given as a flat key should fail, since Helm reads dependency conditions nested",
			vals: with(map[string]any{"cert-manager.install": false}),
			want: "cert-manager.install was given as a flat key (false), but Helm decides whether to install the cert-manager dependency from the nested value before any template runs: pass it as --set cert-manager.install=false (or nested YAML) instead",
		},
		{
			name: "ReadWrite mode with the distribution engine should fail",
			vals: with(map[string]any{"registry": map[string]any{"mode": "ReadWrite"}}),
			want: "registry.mode=ReadWrite needs registry.engine=acr: Distribution's pull-through cache (registry.engine=distribution) cannot accept pushes; use registry.mode=ReadOnly",
		},
		{
			name: "a key under registry.parent.gate that does not exist should fail the strict schema",
			vals: with(map[string]any{"registry": map[string]any{"parent": map[string]any{"gate": map[string]any{"resource": map[string]any{}}}}}),
			want: "resource",
		},
		{
			name: "a misspelled key should fail the strict schema",
			vals: with(map[string]any{"tls.crtt": "x"}),
			want: "tls.crtt",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.vals, tc.apis...)
			require.Error(t, err)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "s3cret-password", "an error must never echo the sync token password")
			if tc.hide != "" {
				require.NotContains(t, err.Error(), tc.hide, "an error must never echo a secret value")
			}
		})
	}
}

func TestFlatKeysMeanTheSameAsNested(t *testing.T) {
	t.Parallel()
	crt := scenarioValue(t, "byoc", "tls.crt")
	key := scenarioValue(t, "byoc", "tls.key")
	flat := map[string]any{
		"connectionString": testConnectionString, "service.clusterIP": testClusterIP,
		"cert-manager.enabled": false, "cert-manager": map[string]any{"install": false},
		"tls.crt": crt, "tls.key": key, "tls.cacrt": crt,
	}
	nested := map[string]any{
		"connectionString": testConnectionString, "service": map[string]any{"clusterIP": testClusterIP},
		"cert-manager": map[string]any{"enabled": false, "install": false},
		"tls":          map[string]any{"crt": crt, "key": key, "cacrt": crt},
	}
	a, err := render(t, flat)
	require.NoError(t, err)
	b, err := render(t, nested)
	require.NoError(t, err)
	require.Equal(t, b.YAML(), a.YAML())
	s, ok := a.Find("Secret", "cr-connected-registry-tls")
	require.True(t, ok, "the BYOC Secret is rendered")
	require.Equal(t, "kubernetes.io/tls", s.Object["type"])
	data := s.Object["data"].(map[string]any)
	require.Equal(t, crt, data["tls.crt"])
	require.Equal(t, key, data["tls.key"])
	require.Equal(t, crt, data["ca.crt"])
}

func TestProtectedSettingsJSONFiles(t *testing.T) {
	t.Parallel()
	crt := scenarioValue(t, "byoc", "tls.crt")
	key := scenarioValue(t, "byoc", "tls.key")
	dir := t.TempDir()
	byoc := filepath.Join(dir, "protected-settings-byoc.json")
	require.NoError(t, os.WriteFile(byoc, []byte(`{"connectionString": "`+testConnectionString+`", "tls.crt": "`+crt+`", "tls.key": "`+key+`", "tls.cacrt": "`+crt+`"}`), 0o600))
	secret := filepath.Join(dir, "protected-settings-secret.json")
	require.NoError(t, os.WriteFile(secret, []byte(`{"connectionString": "`+testConnectionString+`", "tls.secret": "k8secret"}`), 0o600))

	t.Run("BYOC protected settings with --set cert-manager.enabled=false render the certificate Secret", func(t *testing.T) {
		t.Parallel()
		res, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{byoc}, Set: []string{"cert-manager.enabled=false", "cert-manager.install=false", "service.clusterIP=" + testClusterIP}})
		require.NoError(t, err)
		_, ok := res.Find("Secret", "cr-connected-registry-tls")
		require.True(t, ok)
		require.Contains(t, res.Notes, "TLS source:         byoc")
	})
	t.Run("Secret protected settings with --set cert-manager.enabled=false serve the existing Secret", func(t *testing.T) {
		t.Parallel()
		res, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{secret}, Set: []string{"cert-manager.enabled=false", "cert-manager.install=false", "service.clusterIP=" + testClusterIP}})
		require.NoError(t, err)
		_, ok := res.Find("Secret", "cr-connected-registry-tls")
		require.False(t, ok, "no certificate Secret of our own")
		d, ok := res.Find("Deployment", "cr-connected-registry")
		require.True(t, ok)
		require.Contains(t, d.YAML, "- --secret=k8secret", "the tls-reloader feeds the registry from the existing Secret")
	})
}

func TestConnectionStringOnlyInASecret(t *testing.T) {
	t.Parallel()
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	for name, file := range scenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			apis, err := chartrender.ScenarioAPIVersions(file)
			require.NoError(t, err)
			res, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{file}, APIVersions: apis})
			require.NoError(t, err)
			password := "not-a-real-password-0123456789"
			secrets := 0
			for _, d := range res.Documents {
				if d.Kind() == "Secret" && d.Name() == "cr-connected-registry-connection" {
					secrets++
					continue
				}
				if d.Kind() == "Secret" && d.Name() == "cr-connected-registry-preflight" {
					// The preflight's input, a hook: it authenticates to the parent with the sync token, then
					// deletes the Secret; Helm deletes it after the hooks too.
					require.Contains(t, d.YAML, "helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded")
					continue
				}
				require.NotContains(t, d.YAML, password, "%s %s holds the sync token password", d.Kind(), d.Name())
				require.NotContains(t, d.YAML, base64.StdEncoding.EncodeToString([]byte("SyncTokenPassword=")), "%s %s", d.Kind(), d.Name())
			}
			require.Equal(t, 1, secrets)
			require.NotContains(t, res.Notes, password)
		})
	}
}

// TestParentFromConnectionString maps every endpoint of internal/connstring's table, which its ParentURL is
// tested against too, so that the chart and the binaries name the same parent.
func TestParentFromConnectionString(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "internal", "connstring", "testdata", "parent-endpoints.json"))
	require.NoError(t, err)
	var tests []struct{ Name, Endpoint, Protocol, Parent string }
	require.NoError(t, json.Unmarshal(data, &tests))
	require.NotEmpty(t, tests)
	for _, tc := range tests {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			cs := "ConnectedRegistryName=edge1;SyncTokenName=tok;SyncTokenPassword=pw;ParentGatewayEndpoint=" + tc.Endpoint + ";ParentEndpointProtocol=" + tc.Protocol
			res, err := render(t, with(map[string]any{"connectionString": cs}))
			require.NoError(t, err)
			require.Equal(t, tc.Parent, parentURL(t, res))
		})
	}
}

func TestParentOverrideAndProxy(t *testing.T) {
	t.Parallel()
	vals := map[string]any{
		"service": map[string]any{"clusterIP": testClusterIP, "cidr": "10.96.0.0/16"},
		"registry": map[string]any{"parent": map[string]any{
			"url": "https://parent.example.internal:8443/", "credentialsSecret": "parent-creds",
			"caBundle": "-----BEGIN CERTIFICATE-----\nPARENT\n-----END CERTIFICATE-----",
		}},
		"Azure": map[string]any{"proxySettings": map[string]any{
			"isProxyEnabled": "true", "httpsProxy": "http://proxy.example.internal:3128", "noProxy": "corp.example.internal",
			"proxyCert": "-----BEGIN CERTIFICATE-----\nPROXY\n-----END CERTIFICATE-----",
		}, "Cluster": map[string]any{"Region": "westus2", "Cloud": "AzureCloud"}},
	}
	res, err := render(t, vals, chartrender.CertManagerAPIVersion)
	require.NoError(t, err)
	require.Equal(t, "https://parent.example.internal:8443", parentURL(t, res))
	ca, ok := res.Find("ConfigMap", "cr-connected-registry-parent-ca")
	require.True(t, ok, "the parent CA bundle is rendered")
	bundle := ca.Object["data"].(map[string]any)["ca.crt"].(string)
	require.Contains(t, bundle, "PARENT")
	require.Contains(t, bundle, "PROXY", "the proxy's certificate joins the bundle")
	_, ok = res.Find("Secret", "cr-connected-registry-connection")
	require.False(t, ok, "no connection string, no Secret for it")
	d, _ := res.Find("Deployment", "cr-connected-registry")
	require.Contains(t, d.YAML, "secretName: parent-creds")
	require.Contains(t, d.YAML, `connected-registry.io/arc-cluster-region: "westus2"`)
	proxy, ok := res.Find("Secret", "cr-connected-registry-proxy")
	require.True(t, ok, "the proxy's URL, which may hold a password, lives in a Secret")
	require.Equal(t, map[string]any{"httpsProxy": base64.StdEncoding.EncodeToString([]byte("http://proxy.example.internal:3128"))}, proxy.Object["data"])
	for _, o := range res.Documents {
		if o.Kind() != "Secret" {
			require.NotContains(t, o.YAML, "proxy.example.internal:3128", "%s %s holds the proxy's URL", o.Kind(), o.Name())
		}
	}

	// Behind the parent gate (the default), the gate alone talks to the parent: the outbound proxy and the CA
	// are its, and the registry talks to nothing but the gate.
	gate, registry := container(t, d, "parent-gate"), container(t, d, "registry")
	require.Contains(t, gate["env"], map[string]any{"name": "HTTPS_PROXY", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "cr-connected-registry-proxy", "key": "httpsProxy"}}})
	require.Contains(t, gate["env"], map[string]any{"name": "NO_PROXY", "value": "corp.example.internal"})
	require.Contains(t, gate["env"], map[string]any{"name": "SSL_CERT_FILE", "value": "/etc/connected-registry/parent-ca/ca.crt"})
	for _, e := range registry["env"].([]any) {
		require.NotContains(t, []string{"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE"}, e.(map[string]any)["name"], "the registry behind the gate reaches only the gate")
	}

	// Without the gate, the registry talks to the parent itself.
	vals["registry"].(map[string]any)["parent"].(map[string]any)["responseTimeout"] = "0s"
	res, err = render(t, vals, chartrender.CertManagerAPIVersion)
	require.NoError(t, err)
	d, _ = res.Find("Deployment", "cr-connected-registry")
	registry = container(t, d, "registry")
	require.Contains(t, registry["env"], map[string]any{"name": "HTTPS_PROXY", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "cr-connected-registry-proxy", "key": "httpsProxy"}}})
	require.Contains(t, registry["env"], map[string]any{"name": "NO_PROXY", "value": "corp.example.internal,10.96.0.50,10.96.0.0/16,localhost,127.0.0.1,.svc,.svc.cluster.local,kubernetes.default"})
	require.Contains(t, registry["env"], map[string]any{"name": "SSL_CERT_FILE", "value": "/etc/connected-registry/parent-ca/ca.crt"})
}

// container returns the container (or init container) name of the Deployment d.
func container(t *testing.T, d chartrender.Document, name string) map[string]any {
	t.Helper()
	spec := d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	for _, list := range []string{"initContainers", "containers"} {
		cs, _ := spec[list].([]any)
		for _, c := range cs {
			if c.(map[string]any)["name"] == name {
				return c.(map[string]any)
			}
		}
	}
	t.Fatalf("no container %s in %s", name, d.Name())
	return nil
}

// parentURL is the parent the registry reaches: through the parent gate's --parent when its remoteurl is the
// gate.
func parentURL(t *testing.T, res *chartrender.Result) string {
	t.Helper()
	remote, gate := parentPath(t, res)
	if gate == nil || gate["--parent"] == "" {
		return remote
	}
	require.Equal(t, "http://"+gate["--listen"], remote, "the registry's remoteurl must be the parent gate that forwards to the parent")
	return gate["--parent"]
}

// parentPath returns the registry's proxy.remoteurl and the --flag=value arguments of the parent gate, nil
// without one.
func parentPath(t *testing.T, res *chartrender.Result) (string, map[string]string) {
	t.Helper()
	cm, ok := res.Find("ConfigMap", "cr-connected-registry-config")
	require.True(t, ok)
	var config struct {
		Proxy struct {
			RemoteURL string `yaml:"remoteurl"`
		} `yaml:"proxy"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(cm.Object["data"].(map[string]any)["config.yml"].(string)), &config))
	d, ok := res.Find("Deployment", "cr-connected-registry")
	require.True(t, ok)
	spec := d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	for _, c := range spec["initContainers"].([]any) {
		cm := c.(map[string]any)
		if cm["name"] != "parent-gate" {
			continue
		}
		args := map[string]string{}
		for _, a := range cm["args"].([]any) {
			k, v, _ := strings.Cut(a.(string), "=")
			args[k] = v
		}
		return config.Proxy.RemoteURL, args
	}
	return config.Proxy.RemoteURL, nil
}

func TestParentGateModes(t *testing.T) {
	t.Parallel()
	const parent = "https://contoso.azurecr.io"
	t.Run("by default the registry should ask the gate, which forwards to the parent and shares fetches", func(t *testing.T) {
		t.Parallel()
		res, err := render(t, base(), chartrender.CertManagerAPIVersion)
		require.NoError(t, err)
		remote, gate := parentPath(t, res)
		require.Equal(t, "http://127.0.0.1:5128", remote)
		require.Equal(t, map[string]string{"parent-gate": "", "--listen": "127.0.0.1:5128", "--response-timeout": "1500ms",
			"--dial-timeout": "1500ms", "--parent": parent, "--body-timeout": "15s", "--share-fetches": "true",
			"--spool-dir": "/var/spool/parent-gate", "--spool-budget": "4Gi", "--log-level": "info",
			"--cache-dir": "/var/lib/registry", "--volume-size": "500Gi"}, gate)
		d, _ := res.Find("Deployment", "cr-connected-registry")
		require.Contains(t, d.YAML, "- name: gate-spool\n              mountPath: /var/spool/parent-gate")
		require.Contains(t, d.YAML, "- name: gate-spool\n          emptyDir:\n            sizeLimit: 4Gi", "the spool is a volume of its own, bounded")
	})
	t.Run("the gate should have its own resources, nested or flat", func(t *testing.T) {
		t.Parallel()
		gate := func(res *chartrender.Result) map[string]any {
			d, ok := res.Find("Deployment", "cr-connected-registry")
			require.True(t, ok)
			for _, c := range d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["initContainers"].([]any) {
				if c.(map[string]any)["name"] == "parent-gate" {
					return c.(map[string]any)["resources"].(map[string]any)
				}
			}
			t.Fatal("no parent-gate container")
			return nil
		}
		res, err := render(t, base(), chartrender.CertManagerAPIVersion)
		require.NoError(t, err)
		require.Equal(t, map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "64Mi"}, "limits": map[string]any{"memory": "256Mi"}}, gate(res))
		want := map[string]any{"limits": map[string]any{"memory": "1Gi"}}
		res, err = render(t, with(map[string]any{"registry.parent.gate.resources": want}), chartrender.CertManagerAPIVersion)
		require.NoError(t, err)
		require.Equal(t, want, gate(res))
	})
	t.Run("with shareFetches=false the gate should forward each request on its own, with no spool", func(t *testing.T) {
		t.Parallel()
		res, err := render(t, with(map[string]any{"registry": map[string]any{"parent": map[string]any{"shareFetches": false}}}), chartrender.CertManagerAPIVersion)
		require.NoError(t, err)
		remote, gate := parentPath(t, res)
		require.Equal(t, "http://127.0.0.1:5128", remote)
		require.Equal(t, parent, gate["--parent"])
		require.Equal(t, "false", gate["--share-fetches"])
		require.NotContains(t, gate, "--spool-dir")
		d, _ := res.Find("Deployment", "cr-connected-registry")
		require.NotContains(t, d.YAML, "HTTPS_PROXY")
		require.NotContains(t, d.YAML, "gate-spool")
	})
	t.Run("with responseTimeout=0s there should be no gate, and the registry should ask the parent", func(t *testing.T) {
		t.Parallel()
		res, err := render(t, with(map[string]any{"registry": map[string]any{"parent": map[string]any{"responseTimeout": "0s", "http2": true}}}), chartrender.CertManagerAPIVersion)
		require.NoError(t, err)
		remote, gate := parentPath(t, res)
		require.Equal(t, parent, remote)
		require.Nil(t, gate)
		d, _ := res.Find("Deployment", "cr-connected-registry")
		require.NotContains(t, d.YAML, "127.0.0.1:5128")
	})
}

func TestTrustDistributionNotes(t *testing.T) {
	t.Parallel()
	on, err := render(t, base(), chartrender.CertManagerAPIVersion)
	require.NoError(t, err)
	require.Contains(t, on.Notes, "Trust distribution is on")
	off, err := render(t, with(map[string]any{"trustDistribution": map[string]any{"enabled": false}}))
	require.NoError(t, err)
	require.Contains(t, off.Notes, "Trust distribution is off (trustDistribution.enabled=false)")
	require.Contains(t, off.Notes, "/etc/containerd/certs.d/10.96.0.50:443/hosts.toml")
	sel, err := render(t, with(map[string]any{"trustDistribution": map[string]any{"skipNodeSelector": false}}))
	require.NoError(t, err)
	require.Contains(t, sel.Notes, "nodes labelled containerd-configured-by=connected-registry", "skipNodeSelector=false means the node selector is used")
}

func TestSelectorLabelsHoldNoVersion(t *testing.T) {
	t.Parallel()
	res, err := render(t, base(), chartrender.CertManagerAPIVersion)
	require.NoError(t, err)
	for _, d := range res.OfKind("Deployment") {
		sel := d.Object["spec"].(map[string]any)["selector"].(map[string]any)["matchLabels"].(map[string]any)
		for k, v := range sel {
			require.False(t, strings.Contains(k, "version") || strings.Contains(k, "chart"), "selector label %s=%v", k, v)
		}
	}
}

// TestRegistryHTTPIsTheRegistryOnPort80 renders registry-http beside registry with every switch of their shared
// template on: they must differ only in what plain HTTP needs.
func TestRegistryHTTPIsTheRegistryOnPort80(t *testing.T) {
	t.Parallel()
	for _, gate := range []string{"1500ms", "0s"} {
		t.Run("with registry.parent.responseTimeout="+gate, func(t *testing.T) {
			t.Parallel()
			res, err := render(t, with(map[string]any{
				"httpEnabled":              true,
				"allowCredentialsOverHTTP": true,
				"cert-manager":             map[string]any{"enabled": false, "install": false},
				"registry": map[string]any{"clientAuthSecret": "htpasswd", "parent": map[string]any{
					"responseTimeout": gate, "caBundle": "-----BEGIN CERTIFICATE-----\nPARENT\n-----END CERTIFICATE-----"}},
				"Azure": map[string]any{"proxySettings": map[string]any{"isProxyEnabled": true,
					"httpProxy": "http://proxy.example.internal:3128", "httpsProxy": "http://proxy.example.internal:3129"}},
			}))
			require.NoError(t, err)
			d, ok := res.Find("Deployment", "cr-connected-registry")
			require.True(t, ok)
			containers := map[string]map[string]any{}
			for _, c := range d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any) {
				containers[c.(map[string]any)["name"].(string)] = c.(map[string]any)
			}
			https, http := containers["registry"], containers["registry-http"]
			require.NotNil(t, http)
			var httpEnv []any
			for _, e := range http["env"].([]any) {
				if !strings.HasPrefix(e.(map[string]any)["name"].(string), "REGISTRY_HTTP_") {
					httpEnv = append(httpEnv, e)
				}
			}
			require.Equal(t, https["env"], httpEnv, "registry-http reaches the parent as registry does")
			var httpsMounts []any
			for _, m := range https["volumeMounts"].([]any) {
				if m.(map[string]any)["name"] != "tls" {
					httpsMounts = append(httpsMounts, m)
				}
			}
			require.Equal(t, httpsMounts, http["volumeMounts"], "registry-http mounts what registry does, but the certificate")
			for _, k := range []string{"image", "args", "imagePullPolicy", "securityContext", "resources"} {
				require.Equal(t, https[k], http[k], k)
			}
		})
	}
}

// TestDeprecatedHooksImage: the older hooks.image.* keys render exactly what image.* renders, nested or flat,
// and the NOTES name the new key.
func TestDeprecatedHooksImage(t *testing.T) {
	t.Parallel()
	image := map[string]any{"repository": "mirror.example.com/cr", "tag": "9.9.9", "pullPolicy": "Always"}
	cases := map[string]map[string]any{
		"image":       {"image": image},
		"hooks.image": {"hooks": map[string]any{"image": image}},
		"flat image":  {"image.repository": image["repository"], "image.tag": image["tag"], "image.pullPolicy": image["pullPolicy"]},
		"flat hooks.image": {"hooks.image.repository": image["repository"], "hooks.image.tag": image["tag"],
			"hooks.image.pullPolicy": image["pullPolicy"]},
	}
	renders := map[string]*chartrender.Result{}
	for name, vals := range cases {
		// Generated certificates and trust distribution render every container of the project's image.
		res, err := render(t, with(mergeValues(vals, map[string]any{"cert-manager": map[string]any{"enabled": false, "install": false}})))
		require.NoError(t, err, name)
		renders[name] = res
	}
	want := renders["image"]
	require.Contains(t, want.YAML(), "image: mirror.example.com/cr:9.9.9")
	require.NotContains(t, want.YAML(), "ghcr.io/connected-registry/connected-registry")
	require.NotContains(t, want.Notes, "deprecated")
	for _, name := range []string{"hooks.image", "flat image", "flat hooks.image"} {
		require.Equal(t, want.YAML(), renders[name].YAML(), "%s renders other objects than image", name)
	}
	for _, name := range []string{"hooks.image", "flat hooks.image"} {
		require.Contains(t, renders[name].Notes, "WARNING: hooks.image is deprecated: set image.pullPolicy, image.repository, image.tag instead of hooks.image.pullPolicy, hooks.image.repository, hooks.image.tag", name)
	}

	t.Run("a hooks.image field that is given should win over image, and the others keep their defaults", func(t *testing.T) {
		t.Parallel()
		res, err := render(t, with(map[string]any{"hooks.image.tag": "1.2.3"}), chartrender.CertManagerAPIVersion)
		require.NoError(t, err)
		require.Contains(t, res.YAML(), "image: ghcr.io/connected-registry/connected-registry:1.2.3")
		require.Contains(t, res.Notes, "WARNING: hooks.image is deprecated: set image.tag instead of hooks.image.tag")
	})
}

func mergeValues(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestIPv6ClusterIP: an IPv6 service.clusterIP stands in brackets wherever a port follows it (NOTES, the trust
// agent's and the cleanup's --host, the certs.d directory), and bare where an address is asked for (the Service,
// the certificate's SANs).
func TestIPv6ClusterIP(t *testing.T) {
	t.Parallel()
	const ip = "fd00:10:96::50"
	for name, extra := range map[string]map[string]any{
		"trust on":  {},
		"trust off": {"trustDistribution": map[string]any{"enabled": false}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			vals := with(extra)
			vals["service"] = map[string]any{"clusterIP": ip}
			res, err := render(t, vals, chartrender.CertManagerAPIVersion)
			require.NoError(t, err)
			all := res.YAML() + res.Notes
			if i := strings.Index(all, ip+":443"); i >= 0 {
				t.Fatalf("an IPv6 address followed by a port without brackets is no valid reference: …%s…", all[max(0, i-80):i+20])
			}
			require.Contains(t, res.Notes, "image: ["+ip+"]:443/<repository>:<tag>")
			svc := res.OfKind("Service")
			require.NotEmpty(t, svc)
			require.Contains(t, svc[0].YAML, `clusterIP: "`+ip+`"`)
			if name == "trust on" {
				require.Contains(t, res.YAML(), "--host=["+ip+"]:443")
				require.Contains(t, res.Notes, "/etc/containerd/certs.d/["+ip+"]:443/{ca.crt,hosts.toml}")
			} else {
				require.Contains(t, res.Notes, `server = "https://[`+ip+`]:443"`)
			}
		})
	}
}
