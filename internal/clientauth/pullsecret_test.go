package clientauth

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

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
	// A pull Secret of the same name and type that another release (or a user) wrote.
	users := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "users", Name: "cr-pull"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}
	cs := fake.NewClientset(src, foreign, users)
	p := &PullSecrets{Client: cs, SourceNamespace: "cr", Source: "pull-creds", Name: "cr-pull", Server: "10.96.0.50:443",
		Namespaces: []string{"app", "web"}, Owner: "cr/site-a"}
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

	p.Namespaces = []string{"taken", "users"}
	err = p.Sync(ctx)
	require.EqualError(t, err, "pull Secret taken/cr-pull: "+ErrNotOurs.Error()+"\npull Secret users/cr-pull: "+ErrNotOurs.Error())
	s, err := cs.CoreV1().Secrets("users").Get(ctx, "cr-pull", metav1.GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `{"auths":{}}`, string(s.Data[corev1.DockerConfigJsonKey]), "a Secret the release did not write is never overwritten")

	// Uninstall: the release's pull Secrets go, the others stay.
	p.Namespaces = []string{"app", "web", "users", "gone"}
	var out strings.Builder
	require.NoError(t, p.Delete(ctx, &out))
	assert.Equal(t, "pull Secret app/cr-pull: deleted\npull Secret web/cr-pull: deleted\n"+
		"pull Secret users/cr-pull: left alone, not written by cr/site-a\npull Secret gone/cr-pull: absent\n", out.String())
	for ns, want := range map[string]bool{"app": false, "web": false, "users": true, "taken": true} {
		_, err := cs.CoreV1().Secrets(ns).Get(ctx, "cr-pull", metav1.GetOptions{})
		assert.Equal(t, want, err == nil, ns)
	}

	src.Data = map[string][]byte{"username": []byte("x")}
	_, err = cs.CoreV1().Secrets("cr").Update(ctx, src, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.EqualError(t, p.Sync(ctx), "the pull credentials Secret cr/pull-creds needs the keys username and password (a client token's name and password)")
}

// TestPullSecretsFollowTheSource: the pull Secret is written at start, and a rotated password reaches it through
// the watch, without waiting for the (hourly here) resync.
func TestPullSecretsFollowTheSource(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "cr", Name: "pull-creds"},
		Data: map[string][]byte{"username": []byte("site-a"), "password": []byte("pw-1")}}
	cs := fake.NewClientset(src)
	p := &PullSecrets{Client: cs, SourceNamespace: "cr", Source: "pull-creds", Name: "cr-pull", Server: "10.96.0.50:443",
		Namespaces: []string{"app"}, Owner: "cr/site-a"}
	go p.Follow(ctx, time.Hour, slog.New(slog.DiscardHandler))
	password := func() string {
		s, err := cs.CoreV1().Secrets("app").Get(ctx, "cr-pull", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		var cfg map[string]map[string]map[string]string
		require.NoError(t, json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg))
		return cfg["auths"]["10.96.0.50:443"]["password"]
	}
	require.Eventually(t, func() bool { return password() == "pw-1" }, 10*time.Second, 10*time.Millisecond)
	src.Data["password"] = []byte("pw-2")
	_, err := cs.CoreV1().Secrets("cr").Update(ctx, src, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return password() == "pw-2" }, 10*time.Second, 10*time.Millisecond,
		"the watch, not the hourly resync, copies a rotated password")
}
