package chart_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRegistryDNS: the registry pod takes a DNS policy and settings of the site's own (the replicas' gates look
// their peers up by the headless Service's name), given nested or as flat keys; by default it has neither.
func TestRegistryDNS(t *testing.T) {
	t.Parallel()
	res, err := render(t, with(nil))
	require.NoError(t, err)
	pod := podSpec(t, res)
	require.NotContains(t, pod, "dnsPolicy")
	require.NotContains(t, pod, "dnsConfig")

	dns := map[string]any{
		"nameservers": []any{"10.0.0.10"},
		"searches":    []any{"site.svc.cluster.local", "svc.cluster.local"},
		"options":     []any{map[string]any{"name": "ndots", "value": "2"}},
	}
	for name, vals := range map[string]map[string]any{
		"nested": azureReplicas(map[string]any{"registry": map[string]any{"dnsPolicy": "None", "dnsConfig": dns}}),
		"flat":   azureReplicas(map[string]any{"registry.dnsPolicy": "None", "registry.dnsConfig": dns}),
	} {
		res, err := render(t, vals)
		require.NoError(t, err, name)
		pod := podSpec(t, res)
		require.Equal(t, "None", pod["dnsPolicy"], name)
		require.Equal(t, dns, pod["dnsConfig"], name)
	}

	_, err = render(t, with(map[string]any{"registry.dnsPolicy": "Cluster"}))
	require.ErrorContains(t, err, "dnsPolicy")
}
