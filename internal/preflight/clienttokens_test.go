package preflight_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/connected-registry/connected-registry/internal/preflight"
)

func TestClientTokensCheck(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("site-a-pw"), bcrypt.MinCost)
	require.NoError(t, err)
	token := func(extra string) []byte {
		return []byte("password: " + string(hash) + "\n" + extra + "scope:\n- repositories: [\"library/*\"]\n  actions: [read]\n")
	}
	secret := func(name string, data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data}
	}
	tokens := func(data map[string][]byte) []runtime.Object {
		return with(inputSecret(map[string]string{"connectionString": goodCS}), secret("cr-client-tokens", data))
	}
	good := map[string][]byte{"site-a": token(""), "ci": token("disabled: true\n")}
	creds := func(user, password string) *corev1.Secret {
		return secret("site-a-token", map[string][]byte{"username": []byte(user), "password": []byte(password)})
	}
	on := func(c *preflight.Config) { c.ClientTokensSecret = "cr-client-tokens" }
	pull := func(c *preflight.Config) {
		on(c)
		c.PullSecretCredentials, c.PullSecretNamespaces = "site-a-token", []string{"app", "web"}
	}
	const credsRef = "Secret connected-registry/site-a-token named by clientTokens.pullSecret.credentialsSecret"
	cases := []testCase{
		{name: "client tokens off should pass, saying pulls are anonymous",
			want: "client tokens are off: pulls are anonymous inside the cluster network"},
		{name: "a missing tokens Secret should fail naming it and how to make it", cfg: on,
			status: preflight.Fail,
			want: "Secret connected-registry/cr-client-tokens named by clientTokens.secret does not exist: create it with one key per client token, " +
				"each a YAML document with password (a bcrypt hash: htpasswd -nbB <name> <password> | cut -d: -f2) and scope (see the chart README, Client tokens)"},
		{name: "an empty tokens Secret should fail", cfg: on, cluster: cluster{objects: tokens(nil)},
			status: preflight.Fail,
			want:   "Secret connected-registry/cr-client-tokens named by clientTokens.secret holds no client token: every pull would be refused; add one key per client token"},
		{name: "good tokens should pass, naming them", cfg: on, cluster: cluster{objects: tokens(good)},
			want: "Secret connected-registry/cr-client-tokens holds 2 client token(s): ci, site-a"},
		{name: "a password in clear should fail naming the token, not the password", cfg: on,
			cluster: cluster{objects: tokens(map[string][]byte{"site-a": []byte("password: site-a-pw\nscope:\n- repositories: [a]\n  actions: [read]\n")})},
			status:  preflight.Fail,
			want: "Secret connected-registry/cr-client-tokens named by clientTokens.secret: client token \"site-a\": " + "password is not a bcrypt hash ($2a$, $2b$ or $2y$, as htpasswd -B writes): store the hash, never the password" +
				"; fix the key (its value is a YAML document with password, a bcrypt hash, and scope)"},
		{name: "a bad scope should fail naming the token and the entry", cfg: on,
			cluster: cluster{objects: tokens(map[string][]byte{"site-a": []byte("password: " + string(hash) + "\nscope:\n- repositories: [\"a[\"]\n  actions: [push]\n"), "ok": token("")})},
			status:  preflight.Fail,
			want: "Secret connected-registry/cr-client-tokens named by clientTokens.secret: client token \"site-a\": scope[0]: action \"push\" is not read, content/read or metadata/read (the registry is read-only)" +
				"; fix the key (its value is a YAML document with password, a bcrypt hash, and scope)"},
		{name: "pull Secrets whose credentials Secret is missing should fail with the command that makes it", cfg: pull, cluster: cluster{objects: tokens(good)},
			status: preflight.Fail,
			want: credsRef + " does not exist: create it with kubectl -n connected-registry create secret generic site-a-token " +
				"--from-literal=username=<token name> --from-literal=password=<password>"},
		{name: "credentials without a password should fail", cfg: pull,
			cluster: cluster{objects: append(tokens(good), secret("site-a-token", map[string][]byte{"username": []byte("site-a")}))},
			status:  preflight.Fail,
			want:    credsRef + " needs the keys username (a client token's name) and password (its password)"},
		{name: "credentials of an unknown token should fail naming the tokens there are", cfg: pull,
			cluster: cluster{objects: append(tokens(good), creds("site-b", "site-a-pw"))},
			status:  preflight.Fail,
			want:    credsRef + ": its username \"site-b\" is no client token of Secret connected-registry/cr-client-tokens: use one of ci, site-a"},
		{name: "credentials of a disabled token should fail", cfg: pull,
			cluster: cluster{objects: append(tokens(good), creds("ci", "site-a-pw"))},
			status:  preflight.Fail,
			want:    credsRef + ": client token \"ci\" is disabled in Secret connected-registry/cr-client-tokens: enable it, or name another token"},
		{name: "a wrong password should fail without showing it or the hash", cfg: pull,
			cluster: cluster{objects: append(tokens(good), creds("site-a", "wrong-pw"))},
			status:  preflight.Fail,
			want: credsRef + ": its key password does not match client token \"site-a\"'s hash in Secret connected-registry/cr-client-tokens: " +
				"put the token's password there, or the hash of this password in the tokens Secret"},
		{name: "good credentials should pass, naming the namespaces", cfg: pull,
			cluster: cluster{objects: append(tokens(good), creds("site-a", "site-a-pw"))},
			want: "Secret connected-registry/cr-client-tokens holds 2 client token(s): ci, site-a; pull Secrets hold client token \"site-a\" " +
				"(Secret connected-registry/site-a-token) in app, web"},
	}
	for _, tc := range cases {
		require.NotContains(t, tc.want, string(hash))
		require.NotContains(t, tc.want, "wrong-pw")
	}
	runTable(t, "client-tokens", cases)
}
