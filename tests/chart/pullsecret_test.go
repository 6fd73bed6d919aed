package chart_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPullSecretNamespaces: with clientTokens.pullSecret.namespaces the token server writes the pull Secret into
// each namespace (its arguments name them, the credentials Secret and the release as owner), may create there and
// read and update only that name, and the uninstall's cleanup may read and delete only that name there, and is
// told which; the password never appears in the rendered objects.
func TestPullSecretNamespaces(t *testing.T) {
	t.Parallel()
	res, err := render(t, tokensOn(map[string]any{"clientTokens": map[string]any{"pullSecret": map[string]any{
		"namespaces": []any{"app", "web"}, "credentialsSecret": "site-a-token"}}}))
	require.NoError(t, err)

	inits, _ := namedList(podSpec(t, res)["initContainers"])
	args := inits["token-server"]["args"].([]any)
	for _, want := range []string{"--pull-secret-namespaces=app,web", "--pull-secret=connected-registry-pull",
		"--pull-secret-credentials=site-a-token", "--pull-secret-owner=connected-registry/cr"} {
		assert.Contains(t, args, want)
	}
	role, ok := res.Find("Role", "cr-connected-registry")
	require.True(t, ok)
	assert.Contains(t, role.Object["rules"], map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"},
		"resourceNames": []any{"cr-client-tokens", "site-a-token"}, "verbs": []any{"get", "list", "watch"}})

	byNamespace := func(kind, name string) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, d := range res.OfKind(kind) {
			if d.Name() == name {
				out[d.Object["metadata"].(map[string]any)["namespace"].(string)] = d.Object
			}
		}
		return out
	}
	writers := byNamespace("Role", "cr-connected-registry-pull-secret")
	require.Len(t, writers, 2)
	for _, ns := range []string{"app", "web"} {
		assert.Equal(t, []any{
			map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"create"}},
			map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "resourceNames": []any{"connected-registry-pull"}, "verbs": []any{"get", "update"}},
		}, writers[ns]["rules"], ns)
		binding := byNamespace("RoleBinding", "cr-connected-registry-pull-secret")[ns]
		require.NotNil(t, binding, ns)
		assert.Equal(t, []any{map[string]any{"kind": "ServiceAccount", "name": "cr-connected-registry", "namespace": "connected-registry"}}, binding["subjects"])
	}

	cleaners := byNamespace("Role", "cr-connected-registry-cleanup")
	for _, ns := range []string{"app", "web"} {
		require.NotNil(t, cleaners[ns], ns)
		assert.Equal(t, "post-delete", cleaners[ns]["metadata"].(map[string]any)["annotations"].(map[string]any)["helm.sh/hook"])
		assert.Equal(t, []any{map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"},
			"resourceNames": []any{"connected-registry-pull"}, "verbs": []any{"get", "delete"}}}, cleaners[ns]["rules"], ns)
	}
	job, ok := res.Find("Job", "cr-connected-registry-cleanup")
	require.True(t, ok)
	cargs := job.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["args"].([]any)
	for _, want := range []string{"--pull-secret-namespaces=app,web", "--pull-secret=connected-registry-pull", "--pull-secret-owner=connected-registry/cr"} {
		assert.Contains(t, cargs, want)
	}

	assert.Contains(t, res.Notes, "site-a-token) into: app, web. Pods there pull with\n  imagePullSecrets: [{name: connected-registry-pull}]")

	// Without namespaces, nothing of it.
	res, err = render(t, tokensOn(nil))
	require.NoError(t, err)
	assert.Empty(t, byNamespace("Role", "cr-connected-registry-pull-secret"))
	inits, _ = namedList(podSpec(t, res)["initContainers"])
	assert.NotContains(t, inits["token-server"]["args"], "--pull-secret-namespaces=app,web")
}

func TestPullSecretRenderErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"pull Secret namespaces without the credentials Secret should fail naming both keys",
			tokensOn(map[string]any{"clientTokens": map[string]any{"pullSecret": map[string]any{"namespaces": []any{"app"}}}}),
			"clientTokens.pullSecret.namespaces needs clientTokens.pullSecret.credentialsSecret"},
		{"pull Secret namespaces without client tokens should fail",
			with(map[string]any{"cert-manager": map[string]any{"enabled": false, "install": false},
				"clientTokens": map[string]any{"pullSecret": map[string]any{"namespaces": []any{"app"}, "credentialsSecret": "x"}}}),
			"clientTokens.pullSecret.namespaces is set with clientTokens.enabled=false"},
		{"the pre-sync with client tokens but no credentials should fail naming sync.credentialsSecret",
			tokensOn(map[string]any{"sync": map[string]any{"enabled": true, "repositories": []any{map[string]any{"name": "a", "tags": []any{"1"}}}}}),
			"sync.enabled=true with clientTokens.enabled=true needs sync.credentialsSecret"},
		{"a namespace that is no namespace name should fail the schema",
			tokensOn(map[string]any{"clientTokens": map[string]any{"pullSecret": map[string]any{"namespaces": []any{"App_1"}, "credentialsSecret": "x"}}}),
			"namespaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.vals)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
