package chart_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

func tokensOn(extra map[string]any) map[string]any {
	v := with(map[string]any{
		"cert-manager": map[string]any{"enabled": false, "install": false},
		"clientTokens": map[string]any{"enabled": true, "secret": "cr-client-tokens"},
	})
	return deepMerge(v, extra)
}

// deepMerge returns a with b merged in, maps merged key by key.
func deepMerge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		am, aok := out[k].(map[string]any)
		bm, bok := v.(map[string]any)
		if aok && bok {
			out[k] = deepMerge(am, bm)
			continue
		}
		out[k] = v
	}
	return out
}

func podSpec(t *testing.T, res *chartrender.Result) map[string]any {
	t.Helper()
	d, ok := res.Find("Deployment", "cr-connected-registry")
	require.True(t, ok)
	return d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

func namedList(list any) (map[string]map[string]any, []string) {
	out := map[string]map[string]any{}
	var order []string
	for _, c := range list.([]any) {
		m := c.(map[string]any)
		out[m["name"].(string)] = m
		order = append(order, m["name"].(string))
	}
	return out, order
}

func registryConfig(t *testing.T, res *chartrender.Result) map[string]any {
	t.Helper()
	cm, ok := res.Find("ConfigMap", "cr-connected-registry-config")
	require.True(t, ok)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(cm.Object["data"].(map[string]any)["config.yml"].(string)), &cfg))
	return cfg
}

// TestClientTokensRender: with client tokens, the registry's auth.token names the token server's realm on the
// registry's own clusterIP and port 443 (the token server fronts the registry there), trusts the key set the token server writes, and the token server runs as a
// native sidecar between the tls-reloader and the registry, reading only its Secret.
func TestClientTokensRender(t *testing.T) {
	t.Parallel()
	res, err := render(t, tokensOn(nil))
	require.NoError(t, err)

	auth := registryConfig(t, res)["auth"].(map[string]any)
	require.Equal(t, map[string]any{"token": map[string]any{
		"realm": "https://10.96.0.50:443/token", "service": "10.96.0.50:443", "issuer": "connected-registry-token-server",
		"jwks": "/etc/connected-registry/token-jwks/jwks.json", "signingalgorithms": []any{"ES256"},
	}}, auth)

	spec := podSpec(t, res)
	inits, order := namedList(spec["initContainers"])
	require.Equal(t, []string{"tls-reloader", "token-server"}, order[:2], "after the tls-reloader, whose certificate it serves")
	ts := inits["token-server"]
	assert.Equal(t, "Always", ts["restartPolicy"])
	args := ts["args"].([]any)
	for _, want := range []string{"token-server", "--secret=cr-client-tokens", "--service=10.96.0.50:443", "--listen=:5001",
		"--token-lifetime=5m", "--jwks-file=/var/run/token-server/jwks/jwks.json", "--key-dir=/var/run/token-server/keys"} {
		assert.Contains(t, args, want)
	}
	mounts, _ := namedList(ts["volumeMounts"])
	assert.Contains(t, mounts, "token-keys")
	assert.Equal(t, true, mounts["tls"]["readOnly"])

	containers, _ := namedList(spec["containers"])
	regMounts, _ := namedList(containers["registry"]["volumeMounts"])
	assert.Contains(t, regMounts, "token-jwks")
	assert.NotContains(t, regMounts, "token-keys", "the registry never sees the signing keys")
	vols, _ := namedList(spec["volumes"])
	assert.Equal(t, "Memory", vols["token-keys"]["emptyDir"].(map[string]any)["medium"])

	svc, ok := res.Find("Service", "cr-connected-registry")
	require.True(t, ok)
	ports, _ := namedList(svc.Object["spec"].(map[string]any)["ports"])
	assert.Equal(t, map[string]any{"name": "https", "port": 443.0, "targetPort": "token", "protocol": "TCP"}, ports["https"],
		"the Service's 443 reaches the token server's front, which answers /token and passes the rest to the registry")
	assert.NotContains(t, ports, "token", "no second port: the realm is on the registry's own host:port")
	assert.Contains(t, args, "--registry-url=https://127.0.0.1:5443/v2/", "the front passes requests to the registry's own listener")

	role, ok := res.Find("Role", "cr-connected-registry")
	require.True(t, ok)
	assert.Contains(t, role.Object["rules"], map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"},
		"resourceNames": []any{"cr-client-tokens"}, "verbs": []any{"get", "list", "watch"}})

	notes := res.Notes
	assert.Contains(t, notes, "Client tokens are on")
	assert.Contains(t, notes, "imagePullSecrets")
}

func TestClientTokensIPv6Realm(t *testing.T) {
	t.Parallel()
	res, err := render(t, tokensOn(map[string]any{"service": map[string]any{"clusterIP": "fd00:10:96::50"}}))
	require.NoError(t, err)
	tok := registryConfig(t, res)["auth"].(map[string]any)["token"].(map[string]any)
	assert.Equal(t, "https://[fd00:10:96::50]:443/token", tok["realm"])
	assert.Equal(t, "[fd00:10:96::50]:443", tok["service"])
}

// TestPullsAreAnonymousByDefault: without client tokens the registry has no auth, no token server runs, and the
// NOTES say plainly that pulls are anonymous inside the cluster network.
func TestPullsAreAnonymousByDefault(t *testing.T) {
	t.Parallel()
	res, err := render(t, with(map[string]any{"cert-manager": map[string]any{"enabled": false, "install": false}}))
	require.NoError(t, err)
	assert.NotContains(t, registryConfig(t, res), "auth")
	inits, _ := namedList(podSpec(t, res)["initContainers"])
	assert.NotContains(t, inits, "token-server")
	assert.Empty(t, res.OfKind("NetworkPolicy"))
	assert.Contains(t, res.Notes, "Pulls are anonymous: anything that reaches 10.96.0.50:443 inside the cluster network")
}

func TestNetworkPolicy(t *testing.T) {
	t.Parallel()
	res, err := render(t, tokensOn(map[string]any{"networkPolicy": map[string]any{"enabled": true, "nodeCIDRs": []any{"10.0.0.0/16"}}}))
	require.NoError(t, err)
	np, ok := res.Find("NetworkPolicy", "cr-connected-registry")
	require.True(t, ok)
	spec := np.Object["spec"].(map[string]any)
	assert.Equal(t, []any{"Ingress"}, spec["policyTypes"])
	ingress := spec["ingress"].([]any)
	require.Len(t, ingress, 2)
	pods := ingress[0].(map[string]any)
	assert.Equal(t, []any{map[string]any{"namespaceSelector": map[string]any{}}}, pods["from"])
	assert.Equal(t, []any{map[string]any{"port": 5443.0, "protocol": "TCP"}, map[string]any{"port": 5001.0, "protocol": "TCP"}}, pods["ports"])
	nodes := ingress[1].(map[string]any)
	assert.Equal(t, []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/16"}}}, nodes["from"])
	var nodePorts []float64
	for _, p := range nodes["ports"].([]any) {
		nodePorts = append(nodePorts, p.(map[string]any)["port"].(float64))
	}
	assert.True(t, slices.Contains(nodePorts, 8082) && slices.Contains(nodePorts, 8083), "the kubelet's probes of the sidecars: %v", nodePorts)
	// The policy selects exactly the registry pod.
	d, _ := res.Find("Deployment", "cr-connected-registry")
	labels := d.Object["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
	for k, v := range spec["podSelector"].(map[string]any)["matchLabels"].(map[string]any) {
		assert.Equal(t, v, labels[k], k)
	}

	res, err = render(t, tokensOn(map[string]any{"networkPolicy": map[string]any{"enabled": true, "nodeCIDRs": []any{"10.0.0.0/16"}, "podCIDRs": []any{"10.244.0.0/16"}}}))
	require.NoError(t, err)
	np, _ = res.Find("NetworkPolicy", "cr-connected-registry")
	assert.Equal(t, []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.244.0.0/16"}}},
		np.Object["spec"].(map[string]any)["ingress"].([]any)[0].(map[string]any)["from"])
}

func TestClientAuthRenderErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"client tokens without their Secret should fail naming the key",
			tokensOn(map[string]any{"clientTokens": map[string]any{"secret": ""}}),
			"clientTokens.enabled=true needs clientTokens.secret"},
		{"client tokens together with htpasswd should fail naming both keys",
			tokensOn(map[string]any{"registry": map[string]any{"clientAuthSecret": "htpasswd"}}),
			"clientTokens.enabled=true and registry.clientAuthSecret both choose how clients authenticate"},
		{"client tokens with the acr engine should fail",
			tokensOn(map[string]any{"registry": map[string]any{"engine": "acr"}}),
			"clientTokens.enabled=true with registry.engine=acr"},
		{"httpEnabled with client tokens should fail naming both keys and the override",
			tokensOn(map[string]any{"httpEnabled": true}),
			"httpEnabled=true with clientTokens.enabled=true would carry clients' credentials over plain HTTP on port 80: set httpEnabled=false (clients use HTTPS on 443), or set allowCredentialsOverHTTP=true to accept that"},
		{"httpEnabled with htpasswd should fail naming both keys",
			with(map[string]any{"httpEnabled": true, "cert-manager": map[string]any{"enabled": false, "install": false}, "registry": map[string]any{"clientAuthSecret": "htpasswd"}}),
			"httpEnabled=true with registry.clientAuthSecret would carry clients' credentials over plain HTTP"},
		{"a token lifetime within Distribution's leeway should fail",
			tokensOn(map[string]any{"clientTokens": map[string]any{"tokenLifetime": "60s"}}),
			"clientTokens.tokenLifetime=60s is shorter than 90s"},
		{"a NetworkPolicy without node ranges should fail",
			tokensOn(map[string]any{"networkPolicy": map[string]any{"enabled": true}}),
			"networkPolicy.enabled=true needs networkPolicy.nodeCIDRs"},
		{"a misspelt client-token key should fail the schema",
			tokensOn(map[string]any{"clientTokens": map[string]any{"secrets": "x"}}),
			"secrets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.vals)
			require.ErrorContains(t, err, tc.want)
		})
	}

	_, err := render(t, tokensOn(map[string]any{"httpEnabled": true, "allowCredentialsOverHTTP": true}))
	require.NoError(t, err, "allowCredentialsOverHTTP accepts httpEnabled with client tokens")
}

// TestClientTokensFlatKeys: the Arc extension's flat keys mean the same as nested ones.
func TestClientTokensFlatKeys(t *testing.T) {
	t.Parallel()
	nested, err := render(t, tokensOn(nil))
	require.NoError(t, err)
	flat, err := render(t, with(map[string]any{"cert-manager.enabled": false, "cert-manager": map[string]any{"install": false},
		"clientTokens.enabled": true, "clientTokens.secret": "cr-client-tokens"}))
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(nested.YAML()), strings.TrimSpace(flat.YAML()))
}
