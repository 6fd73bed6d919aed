package postrender

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// TestPartsAreUsed: the overlays the design allows are built in parts (pinned objects included); the others
// at once. TestPartsMatchWholeBuild proves the outputs equal.
func TestPartsAreUsed(t *testing.T) {
	t.Parallel()
	var in strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&in, "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d%d\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s%d\n", i, i)
	}
	cases := []struct {
		name, kustomization string
		parts               bool
	}{
		{"namespace and targeted patches", "resources: [helm-output.yaml]\nnamespace: x\npatches:\n- target: {kind: Service}\n  patch: '[{\"op\": \"add\", \"path\": \"/spec\", \"value\": {}}]'\n", true},
		{"replicas and an untargeted patch pin their objects into every part", "resources: [helm-output.yaml]\nreplicas: [{name: d3, count: 2}]\n" +
			"patches:\n- patch: |\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: d7}\n    spec: {paused: true}\n", true},
		{"a name suffix", "resources: [helm-output.yaml]\nnameSuffix: -x\n", false},
		{"a generator", "resources: [helm-output.yaml]\nconfigMapGenerator: [{name: c, literals: [a=b]}]\n", false},
		{"another resource", "resources: [helm-output.yaml, extra.yaml]\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := filesys.MakeFsInMemory()
			require.NoError(t, fs.WriteFile("/o/kustomization.yaml", []byte(tc.kustomization)))
			require.NoError(t, fs.WriteFile("/o/extra.yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n")))
			r, err := New(Options{Dir: "/o", FS: fs, ChunkSize: 10})
			require.NoError(t, err)
			_, err = r.Run(bytes.NewBufferString(in.String()))
			require.NoError(t, err)
			if tc.parts {
				require.Greater(t, r.lastParts, 1, r.chunkReason)
			} else {
				require.Equal(t, 1, r.lastParts)
			}
		})
	}
}
