package main

// These tests check the generated chart schema the way Helm does: Helm 3.22 and Helm 4 compile values.schema.json
// with santhosh-tekuri/jsonschema/v6 (no AssertFormat, resource "file:///values.schema.json") and validate the
// values after coalescing the user's values with the chart's values.yaml.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
)

var (
	chartPath  = filepath.Join("..", "..", "chart", "connected-registry")
	schemaPath = filepath.Join(chartPath, "values.schema.json")
	valuesPath = filepath.Join(chartPath, "values.yaml")
)

// compileSchema compiles schema exactly as Helm's chartutil.ValidateAgainstSingleSchema does.
func compileSchema(t *testing.T, schema []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("file:///values.schema.json", doc))
	s, err := c.Compile("file:///values.schema.json")
	require.NoError(t, err)
	return s
}

// helmValues reads user values (YAML or JSON) as Helm does and coalesces them with the chart's values.yaml.
func helmValues(t *testing.T, user []byte) map[string]any {
	t.Helper()
	defaults, err := chartutil.ReadValuesFile(valuesPath)
	require.NoError(t, err)
	vals, err := chartutil.ReadValues(user)
	require.NoError(t, err)
	chrt := &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: "connected-registry", Version: "0.1.0"},
		Values:   defaults,
	}
	merged, err := chartutil.CoalesceValues(chrt, vals)
	require.NoError(t, err)
	return merged.AsMap()
}

// validate checks values with our compiled schema and with Helm's own function, which must agree.
func validate(t *testing.T, schema []byte, compiled *jsonschema.Schema, values map[string]any) error {
	t.Helper()
	err := compiled.Validate(values)
	helmErr := chartutil.ValidateAgainstSingleSchema(values, schema)
	require.Equal(t, err == nil, helmErr == nil, "jsonschema: %v\nhelm: %v", err, helmErr)
	return err
}

func chartSchema(t *testing.T) ([]byte, *jsonschema.Schema) {
	t.Helper()
	schema, err := os.ReadFile(schemaPath)
	require.NoError(t, err, "generate it with go run ./ci/valuesdoc")
	return schema, compileSchema(t, schema)
}

// TestChartFilesAreUpToDate fails when values.yaml changed without regenerating the schema, so that the tests
// below check the schema values.yaml gives.
func TestChartFilesAreUpToDate(t *testing.T) {
	t.Parallel()
	o := Options{ValuesPath: valuesPath, SchemaPath: schemaPath, Check: true}
	var out bytes.Buffer
	require.NoError(t, o.Run(context.Background(), &out), out.String())
}

// TestChartReadmeShowsNoSchemaAnnotation: helm-docs writes the README from the same comments, and must not take an
// `# @schema` line for part of a description (parseComment refuses one below `# --`).
func TestChartReadmeShowsNoSchemaAnnotation(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(chartPath, "README.md"))
	require.NoError(t, err)
	require.True(t, strings.Contains(string(readme), "| connectionString | string |"), "README.md has no values table")
	require.False(t, strings.Contains(string(readme), "@schema {"), "a description in README.md shows an # @schema line")
}

func TestChartValuesValidate(t *testing.T) {
	t.Parallel()
	schema, compiled := chartSchema(t)
	require.NoError(t, validate(t, schema, compiled, helmValues(t, nil)), "values.yaml itself")

	files, err := filepath.Glob(filepath.Join(chartPath, "ci", "*.yaml"))
	require.NoError(t, err)
	if len(files) == 0 {
		t.Log("no chart/connected-registry/ci/*.yaml yet")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			require.NoError(t, validate(t, schema, compiled, helmValues(t, data)))
		})
	}
}

func TestChartSchema(t *testing.T) {
	t.Parallel()
	schema, compiled := chartSchema(t)
	const conn = "ConnectedRegistryName=a;SyncTokenName=b;SyncTokenPassword=c;ParentGatewayEndpoint=x.westus.data.azurecr.io;ParentEndpointProtocol=https"
	tests := []struct {
		name    string
		values  string
		wantErr []string
	}{
		{
			name:   "the Azure protected settings with an inline certificate as flat keys are accepted",
			values: `{"connectionString":"` + conn + `","tls.crt":"QQ==","tls.key":"QQ==","tls.cacrt":"QQ=="}`,
		},
		{
			name:   "the Azure protected settings naming an existing Secret are accepted",
			values: `{"connectionString":"` + conn + `","tls.secret":"k8secret"}`,
		},
		{
			name:   "cert-manager disabled with a nested key is accepted",
			values: `{"cert-manager":{"enabled":false}}`,
		},
		{
			name:   "cert-manager disabled with a flat key is accepted",
			values: `{"cert-manager.enabled":false}`,
		},
		{
			name:   "values of the cert-manager subchart pass through under its alias",
			values: `{"cert-manager":{"install":true},"certManager":{"replicaCount":2,"crds":{"enabled":true,"keep":false}}}`,
		},
		{
			name:    "a cert-manager chart value under the Azure switches is rejected, pointing at the alias",
			values:  `{"cert-manager":{"replicaCount":2}}`,
			wantErr: []string{"at '/cert-manager':", "'replicaCount'"},
		},
		{
			name:   "the values the Azure extension manager sets are accepted",
			values: `{"Azure":{"Cluster":{"Region":"westus"},"proxySettings":{"isProxyEnabled":true}}}`,
		},
		{
			name:   "the Azure proxy switch given as a string, as --set-string passes it, is accepted",
			values: `{"Azure.proxySettings.isProxyEnabled":"true","Azure.proxySettings.httpsProxy":"http://proxy:3128"}`,
		},
		{
			name:   "Helm's global values are accepted",
			values: `{"global":{"imageRegistry":"example.com"}}`,
		},
		{
			name:   "an IPv4 ClusterIP is accepted",
			values: `{"service":{"clusterIP":"10.96.0.50"}}`,
		},
		{
			name:   "an IPv6 ClusterIP is accepted, flat too",
			values: `{"service.clusterIP":"fd00:10:96::50"}`,
		},
		{
			name:   "a free-form map given flat is accepted",
			values: `{"registry.resources":{"limits":{"memory":"2Gi"}}}`,
		},
		{
			name:   "YAML values with an integer enum are accepted",
			values: "tls:\n  keyAlgorithm: RSA\n  keySize: 3072\n",
		},
		{
			name:    "a misspelt flat key is rejected naming it",
			values:  `{"tls.crtt":"x"}`,
			wantErr: []string{"at '':", "'tls.crtt'"},
		},
		{
			name:    "a misspelt nested key is rejected naming it",
			values:  `{"tls":{"crtt":"x"}}`,
			wantErr: []string{"at '/tls':", "'crtt'"},
		},
		{
			name:    "a misspelt top-level key is rejected naming it",
			values:  `{"conectionString":"x"}`,
			wantErr: []string{"'conectionString'"},
		},
		{
			name:    "a registry mode outside its enum is rejected naming the key",
			values:  `{"registry":{"mode":"readonly"}}`,
			wantErr: []string{"at '/registry/mode':", "'ReadOnly'"},
		},
		{
			name:    "a string where a boolean belongs is rejected naming the key",
			values:  `{"trustDistribution":{"enabled":"yes"}}`,
			wantErr: []string{"at '/trustDistribution/enabled':", "want boolean"},
		},
		{
			name:    "a flat key with a value of the wrong type is rejected naming the key",
			values:  `{"cert-manager.enabled":"no"}`,
			wantErr: []string{"at '/cert-manager.enabled':", "want boolean"},
		},
		{
			name:    "a ClusterIP that is not an IP address is rejected",
			values:  `{"service":{"clusterIP":"not-an-ip"}}`,
			wantErr: []string{"at '/service/clusterIP':", "not valid ipv4"},
		},
		{
			name:    "a ClusterIP with an octet above 255 is rejected",
			values:  `{"service":{"clusterIP":"10.0.0.300"}}`,
			wantErr: []string{"at '/service/clusterIP':"},
		},
		{
			name:    "a flat ClusterIP that is not an IP address is rejected",
			values:  `{"service.clusterIP":"not-an-ip"}`,
			wantErr: []string{"at '/service.clusterIP':"},
		},
		{
			name:    "a misspelt key two levels down is rejected naming it",
			values:  `{"registry":{"image":{"tags":"3"}}}`,
			wantErr: []string{"at '/registry/image':", "'tags'"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := validate(t, schema, compiled, helmValues(t, []byte(tt.values)))
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

// TestHelmAssertsFormatsOnlyForDraft07 shows why the schema declares draft-07: jsonschema/v6, as Helm calls it,
// asserts `format` for draft-07 and older only, so without `$schema` (draft 2020-12 by default) the ClusterIP's
// ipv4/ipv6 formats would accept anything.
func TestHelmAssertsFormatsOnlyForDraft07(t *testing.T) {
	t.Parallel()
	schema, compiled := chartSchema(t)
	require.Contains(t, string(schema), `"$schema": "`+SchemaDraft+`"`)
	bad := helmValues(t, []byte(`{"service":{"clusterIP":"not-an-ip"}}`))
	require.Error(t, validate(t, schema, compiled, bad), "draft-07 asserts formats")

	withoutDraft := []byte(strings.Replace(string(schema), `"$schema": "`+SchemaDraft+`",`, "", 1))
	require.NotEqual(t, string(schema), string(withoutDraft))
	require.NoError(t, validate(t, withoutDraft, compileSchema(t, withoutDraft), bad),
		"without $schema, formats are annotations only")
}
