package chart_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// The renders of the equivalence matrix are a tool for refactoring the chart's templates: dump them before a
// change with
//
//	CHART_RENDER_DUMP=/tmp/before go test ./tests/chart -run TestEquivalenceMatrix
//
// and compare the chart after the change with
//
//	CHART_RENDER_BEFORE=/tmp/before go test ./tests/chart -run TestEquivalenceMatrix -v
//
// which fails listing every field that differs, comparing parsed objects by kind, namespace and name, so that
// order, YAML formatting and comments do not count. Without either variable the test only renders the matrix.

// equivalenceCase is one set of values of the matrix.
type equivalenceCase struct {
	name      string
	files     []string
	values    map[string]any
	apis      []string
	isUpgrade bool
}

// equivalenceMatrix is every scenario of chart/connected-registry/ci, and the value combinations the scenarios
// leave out: the proxy, the parent gate's modes, a private CA, parent credentials, client authentication, the
// acr engine with each of them, node placement, and the Arc identity.
func equivalenceMatrix(t *testing.T) []equivalenceCase {
	t.Helper()
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	var cases []equivalenceCase
	for _, name := range slices.Sorted(maps.Keys(scenarios)) {
		apis, err := chartrender.ScenarioAPIVersions(scenarios[name])
		require.NoError(t, err)
		cases = append(cases, equivalenceCase{name: "scenario-" + name, files: []string{scenarios[name]}, apis: apis})
	}
	cm := []string{chartrender.CertManagerAPIVersion}
	noCM := map[string]any{"enabled": false, "install": false}
	proxy := map[string]any{
		"isProxyEnabled": true, "httpProxy": "http://proxy.example.internal:3128",
		"httpsProxy": "http://proxy.example.internal:3129", "noProxy": "corp.example.internal",
		"proxyCert": "-----BEGIN CERTIFICATE-----\nPROXY\n-----END CERTIFICATE-----",
	}
	parent := func(p map[string]any) map[string]any { return map[string]any{"parent": p} }
	caBundle := "-----BEGIN CERTIFICATE-----\nPARENT\n-----END CERTIFICATE-----\n"
	add := func(name string, extra map[string]any, apis []string) {
		cases = append(cases, equivalenceCase{name: name, values: with(extra), apis: apis})
	}
	add("proxy", map[string]any{"Azure": map[string]any{"proxySettings": proxy}}, cm)
	add("proxy-service-cidr", map[string]any{"service": map[string]any{"clusterIP": testClusterIP, "cidr": "10.96.0.0/16"},
		"Azure": map[string]any{"proxySettings": proxy}}, cm)
	add("proxy-only-https", map[string]any{"Azure": map[string]any{"proxySettings": map[string]any{"isProxyEnabled": "true", "httpsProxy": "http://p:1"}}}, cm)
	add("proxy-no-gate", map[string]any{"Azure": map[string]any{"proxySettings": proxy},
		"registry": parent(map[string]any{"responseTimeout": "0s"})}, cm)
	add("proxy-tunnel-gate", map[string]any{"Azure": map[string]any{"proxySettings": proxy},
		"registry": parent(map[string]any{"shareFetches": false})}, cm)
	add("proxy-disabled", map[string]any{"Azure": map[string]any{"proxySettings": map[string]any{"isProxyEnabled": false, "httpsProxy": "http://p:1", "proxyCert": "X"}}}, cm)
	add("tunnel-gate", map[string]any{"registry": parent(map[string]any{"shareFetches": false})}, cm)
	add("no-gate", map[string]any{"registry": parent(map[string]any{"responseTimeout": "0ms", "http2": true})}, cm)
	add("ca-bundle", map[string]any{"registry": parent(map[string]any{"caBundle": caBundle})}, cm)
	add("ca-bundle-no-gate", map[string]any{"registry": parent(map[string]any{"caBundle": caBundle, "responseTimeout": "0s"})}, cm)
	add("parent-url-credentials", map[string]any{"connectionString": "", "registry": parent(map[string]any{
		"url": "https://parent.example.internal:8443/", "credentialsSecret": "parent-creds"})}, cm)
	add("parent-url-anonymous", map[string]any{"connectionString": "", "registry": parent(map[string]any{"url": "http://10.1.2.3:5000"})}, cm)
	add("client-auth-http", map[string]any{"httpEnabled": true, "allowCredentialsOverHTTP": true, "registry": map[string]any{"clientAuthSecret": "htpasswd",
		"http2": true, "logLevel": "debug", "cache": map[string]any{"ttl": "720h"}}, "cert-manager": noCM}, nil)
	add("http-everything", map[string]any{"httpEnabled": true, "allowCredentialsOverHTTP": true, "Azure": map[string]any{"proxySettings": proxy},
		"registry": map[string]any{"clientAuthSecret": "htpasswd", "parent": map[string]any{"caBundle": caBundle, "http2": true}}}, cm)
	add("http-no-gate", map[string]any{"httpEnabled": true, "registry": parent(map[string]any{"responseTimeout": "0s"})}, cm)
	add("client-tokens-network-policy", map[string]any{"clientTokens": map[string]any{"enabled": true, "secret": "cr-client-tokens",
		"tokenLifetime": "10m", "keyRotation": "24h", "pullSecret": map[string]any{"namespaces": []any{"app", "web"}, "name": "site-pull",
			"credentialsSecret": "site-a-token"}}, "networkPolicy": map[string]any{"enabled": true, "nodeCIDRs": []any{"10.0.0.0/16"}}}, cm)
	add("acr-proxy-ca", map[string]any{"registry": map[string]any{"engine": "acr", "parent": map[string]any{"caBundle": caBundle}},
		"Azure": map[string]any{"proxySettings": proxy}}, cm)
	add("acr-generated-no-trust", map[string]any{"registry": map[string]any{"engine": "acr", "mode": "ReadOnly"},
		"cert-manager": noCM, "trustDistribution": map[string]any{"enabled": false}}, nil)
	add("placement", map[string]any{"registry": map[string]any{
		"nodeSelector": map[string]any{"site": "edge"}, "tolerations": []any{map[string]any{"key": "edge", "operator": "Exists"}},
		"affinity":       map[string]any{"nodeAffinity": map[string]any{}},
		"podAnnotations": map[string]any{"a": "b"}, "resources": map[string]any{"limits": map[string]any{"memory": "2Gi"}},
	}, "cert-manager": noCM, "trustDistribution": map[string]any{"useNodeSelector": true, "registriesYaml": "/etc/rancher/k3s/registries.yaml",
		"containerdConfig": ""}}, nil)
	add("skip-node-selector", map[string]any{"trustDistribution": map[string]any{"skipNodeSelector": false}}, cm)
	add("azure-identity", map[string]any{"Azure": map[string]any{
		"Cluster":   map[string]any{"ResourceId": "/subscriptions/x/cluster", "Region": "westus2", "Distribution": "k3s", "Infrastructure": "generic"},
		"Extension": map[string]any{"Name": "cr", "ResourceId": "/subscriptions/x/ext"},
	}}, cm)
	cases = append(cases, equivalenceCase{name: "flat-keys", apis: cm, values: map[string]any{
		"connectionString": testConnectionString, "service.clusterIP": testClusterIP, "registry.parent.shareFetches": false,
		"hooks.resources": map[string]any{"limits": map[string]any{"memory": "64Mi"}}, "pvc.keep": true, "pvc.storageClassName": "fast",
		"logLevel": "debug", "tls.keyAlgorithm": "RSA", "tls.keySize": 2048, "tls.duration": "720h",
	}})
	add("rsa-generated", map[string]any{"cert-manager": noCM, "tls": map[string]any{"keyAlgorithm": "RSA", "keySize": 3072, "renewalSchedule": "0 1 * * *"}}, nil)
	add("secret-source-no-trust", map[string]any{"cert-manager": noCM, "tls": map[string]any{"secret": "k8secret"},
		"trustDistribution": map[string]any{"enabled": false}}, nil)
	cases = append(cases, equivalenceCase{name: "upgrade", values: base(), apis: cm, isUpgrade: true})
	return cases
}

func TestEquivalenceMatrix(t *testing.T) {
	t.Parallel()
	dump, before := os.Getenv("CHART_RENDER_DUMP"), os.Getenv("CHART_RENDER_BEFORE")
	var differences []string
	for _, tc := range equivalenceMatrix(t) {
		res, err := chartrender.Render(chartrender.Options{ValuesFiles: tc.files, Values: tc.values, APIVersions: tc.apis, IsUpgrade: tc.isUpgrade})
		require.NoError(t, err, tc.name)
		got := res.YAML() + "---\n# NOTES.txt\n" + res.Notes + "\n"
		if dump != "" {
			require.NoError(t, os.MkdirAll(dump, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dump, tc.name+".yaml"), []byte(got), 0o644))
		}
		if before != "" {
			want, err := os.ReadFile(filepath.Join(before, tc.name+".yaml"))
			require.NoError(t, err)
			for _, d := range semanticDiff(t, string(want), got) {
				differences = append(differences, tc.name+": "+d)
			}
		}
	}
	require.Empty(t, differences, "rendered objects differ from those in %s:\n%s", before, strings.Join(differences, "\n"))
}

// semanticDiff compares two renders object by object, keyed by kind, namespace and name, and NOTES line by
// line; it returns one line per difference.
func semanticDiff(t *testing.T, before, after string) []string {
	t.Helper()
	a, aNotes := parseRender(t, before)
	b, bNotes := parseRender(t, after)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if _, ok := b[k]; !ok {
			out = append(out, fmt.Sprintf("%s: removed", k))
			continue
		}
		out = append(out, diffValues(k, a[k], b[k])...)
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: added", k))
		}
	}
	if aNotes != bNotes {
		out = append(out, fmt.Sprintf("NOTES: %q -> %q", aNotes, bNotes))
	}
	return out
}

func parseRender(t *testing.T, render string) (map[string]any, string) {
	t.Helper()
	manifests, notes, _ := strings.Cut(render, "---\n# NOTES.txt\n")
	objects := map[string]any{}
	for _, doc := range strings.Split(manifests, "\n---\n") {
		var m map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(strings.TrimPrefix(doc, "---\n")), &m))
		if m == nil {
			continue
		}
		md, _ := m["metadata"].(map[string]any)
		key := fmt.Sprintf("%v/%v/%v", m["kind"], md["namespace"], md["name"])
		_, dup := objects[key]
		require.False(t, dup, "two objects %s", key)
		objects[key] = m
	}
	return objects, notes
}

// diffValues lists the paths where a and b differ. A multi-line string, such as a ConfigMap's config.yml, is
// compared as YAML when both sides parse as YAML.
func diffValues(path string, a, b any) []string {
	if reflect.DeepEqual(a, b) {
		return nil
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		var out []string
		keys := slices.Collect(maps.Keys(av))
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			x, inA := av[k]
			y, inB := bv[k]
			switch {
			case !inA:
				out = append(out, fmt.Sprintf("%s.%s: added %s", path, k, compact(y)))
			case !inB:
				out = append(out, fmt.Sprintf("%s.%s: removed %s", path, k, compact(x)))
			default:
				out = append(out, diffValues(path+"."+k, x, y)...)
			}
		}
		return out
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		if an, bn := names(av), names(bv); an != nil && bn != nil {
			return diffNamed(path, av, bv, an, bn)
		}
		if len(av) != len(bv) {
			break
		}
		var out []string
		for i := range av {
			out = append(out, diffValues(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i])...)
		}
		return out
	case string:
		bv, ok := b.(string)
		if ok && strings.Contains(av, "\n") {
			var x, y any
			if yaml.Unmarshal([]byte(av), &x) == nil && yaml.Unmarshal([]byte(bv), &y) == nil {
				if _, isMap := x.(map[string]any); isMap {
					return diffValues(path+"|yaml", x, y)
				}
			}
		}
	}
	return []string{fmt.Sprintf("%s: %s -> %s", path, compact(a), compact(b))}
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// names returns the "name" of every item of a list of named objects (containers, env, volumes, ports), or nil
// when the list is not one.
func names(list []any) []string {
	var out []string
	seen := map[string]bool{}
	for _, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil
		}
		n, ok := m["name"].(string)
		if !ok || seen[n] {
			return nil
		}
		seen[n] = true
		out = append(out, n)
	}
	return out
}

// diffNamed compares lists of named objects item by item by name, and reports a change of order once.
func diffNamed(path string, a, b []any, an, bn []string) []string {
	var out []string
	index := func(list []string, n string) int { return slices.Index(list, n) }
	var common []string
	for i, n := range an {
		j := index(bn, n)
		if j < 0 {
			out = append(out, fmt.Sprintf("%s[%s]: removed %s", path, n, compact(a[i])))
			continue
		}
		common = append(common, n)
		out = append(out, diffValues(fmt.Sprintf("%s[%s]", path, n), a[i], b[j])...)
	}
	var commonB []string
	for j, n := range bn {
		if index(an, n) < 0 {
			out = append(out, fmt.Sprintf("%s[%s]: added %s", path, n, compact(b[j])))
			continue
		}
		commonB = append(commonB, n)
	}
	// The order of containers and init containers is their start order; that of volumes, mounts and ports
	// means nothing, and that of env only where a value refers to another with $(NAME), which none does.
	orderless := strings.HasSuffix(path, ".volumes") || strings.HasSuffix(path, ".volumeMounts") ||
		strings.HasSuffix(path, ".ports") || strings.HasSuffix(path, ".env") && !strings.Contains(compact(b), "$(")
	if !orderless && !slices.Equal(common, commonB) {
		out = append(out, fmt.Sprintf("%s: order %v -> %v", path, common, commonB))
	}
	return out
}
