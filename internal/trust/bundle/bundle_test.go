package bundle_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

func TestAckAnnotation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("node-pool-a.", 20) + "x" // 241 characters, a valid node name
	tests := []struct {
		name string
		node string
		want string
	}{
		{name: "a short node name should be used as it is", node: "worker-1", want: bundle.AckAnnotationPrefix + "worker-1"},
		{name: "a dotted node name should be used as it is", node: "ip-10-0-0-1.eu-west-1.compute.internal", want: bundle.AckAnnotationPrefix + "ip-10-0-0-1.eu-west-1.compute.internal"},
		{name: "a 63-character node name should be used as it is", node: strings.Repeat("a", 63), want: bundle.AckAnnotationPrefix + strings.Repeat("a", 63)},
		{name: "a 64-character node name should be cut and hashed", node: strings.Repeat("a", 64)},
		{name: "a 241-character node name should be cut and hashed", node: long},
		{name: "a long node name cut before a dot should be hashed into a valid name", node: strings.Repeat("b", 45) + "." + strings.Repeat("c", 30)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := bundle.AckAnnotation(tc.node)
			require.Empty(t, validation.IsQualifiedName(got), "%q is not a valid annotation name", got)
			require.True(t, strings.HasPrefix(got, bundle.AckAnnotationPrefix), got)
			if tc.want != "" {
				require.Equal(t, tc.want, got)
				return
			}
			name := strings.TrimPrefix(got, bundle.AckAnnotationPrefix)
			require.Len(t, name, 63)
			require.Equal(t, tc.node[:46], name[:46], "the name still shows which node acknowledged")
			require.Equal(t, got, bundle.AckAnnotation(tc.node), "the same node gets the same annotation")
			require.NotEqual(t, got, bundle.AckAnnotation(tc.node+"z"), "nodes sharing the first 46 characters get different annotations")
		})
	}
}
