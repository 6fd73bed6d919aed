package clientauth

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestPullSecretsWriteAndFollowARotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "cr", Name: "pull-creds"},
		Data: map[string][]byte{"username": []byte("site-a"), "password": []byte("pw-1")}}
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "taken", Name: "cr-pull"}, Type: corev1.SecretTypeOpaque}
	cs := fake.NewClientset(src, foreign)
	p := &PullSecrets{Client: cs, SourceNamespace: "cr", Source: "pull-creds", Name: "cr-pull", Server: "10.96.0.50:443",
		Namespaces: []string{"app", "web"}}
	require.NoError(t, p.Sync(ctx))
	read := func(ns string) map[string]map[string]map[string]string {
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, "cr-pull", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, corev1.SecretTypeDockerConfigJson, s.Type)
		var cfg map[string]map[string]map[string]string
		require.NoError(t, json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg))
		return cfg
	}
	for _, ns := range p.Namespaces {
		auth := read(ns)["auths"]["10.96.0.50:443"]
		assert.Equal(t, "site-a", auth["username"])
		assert.Equal(t, "pw-1", auth["password"])
		assert.Equal(t, "c2l0ZS1hOnB3LTE=", auth["auth"])
	}

	src.Data["password"] = []byte("pw-2")
	_, err := cs.CoreV1().Secrets("cr").Update(ctx, src, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, "pw-2", read("app")["auths"]["10.96.0.50:443"]["password"], "a rotated password is copied again")

	p.Namespaces = []string{"taken"}
	err = p.Sync(ctx)
	require.ErrorContains(t, err, "pull Secret taken/cr-pull: exists with type Opaque")
	assert.NotContains(t, err.Error(), "pw-2")

	src.Data = map[string][]byte{"username": []byte("x")}
	_, err = cs.CoreV1().Secrets("cr").Update(ctx, src, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.EqualError(t, p.Sync(ctx), "the pull credentials Secret cr/pull-creds needs the keys username and password (a client token's name and password)")
}
