package registryapi_test

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/registryapi"
)

func TestChallenges(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, in, out string }{
		{"a Bearer challenge should keep its parameters in order", `Bearer realm="https://r.example/token",service="r.example",scope="repository:a:pull"`,
			`Bearer realm="https://r.example/token",service="r.example",scope="repository:a:pull"`},
		{"unquoted values and spaces should be read", `bearer   realm=https://r.example/token , service=r.example`, `bearer realm="https://r.example/token",service="r.example"`},
		{"two challenges in one value should both be kept", `Basic realm="x", Bearer realm="https://r.example/t",service="s"`,
			`Basic realm="x", Bearer realm="https://r.example/t",service="s"`},
		{"escapes in a quoted string should survive", `Bearer realm="https://r.example/t",error="a \"quoted\" word"`, `Bearer realm="https://r.example/t",error="a \"quoted\" word"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs, err := registryapi.ParseChallenges(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.out, registryapi.FormatChallenges(cs))
		})
	}
	for _, bad := range []string{`Bearer realm="unterminated`, `=x`, `Bearer realm=`} {
		_, err := registryapi.ParseChallenges(bad)
		require.Error(t, err, bad)
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	require.Equal(t, "UNAUTHORIZED authentication required", registryapi.ErrorMessage([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication\nrequired"}]}`)))
	require.Empty(t, registryapi.ErrorMessage([]byte(`<html>not json</html>`)))
	require.Empty(t, registryapi.ErrorMessage([]byte(`{"errors":[]}`)))
}

func TestRealmURL(t *testing.T) {
	t.Parallel()
	https := &url.URL{Scheme: "https", Host: "r.example"}
	plain := &url.URL{Scheme: "http", Host: "r.example"}
	for _, tt := range []struct {
		name, realm string
		registry    *url.URL
		ok          bool
	}{
		{"an https realm of an https registry should be taken", "https://login.example/oauth2/token", https, true},
		{"an http realm of an https registry should be refused: credentials would go in clear", "http://login.example/token", https, false},
		{"an http realm of an http registry should be taken", "http://r.example/token", plain, true},
		{"a realm with user information should be refused", "https://user:pw@login.example/token", https, false},
		{"a relative realm should be refused", "/token", https, false},
		{"a realm with a fragment should be refused", "https://login.example/token#x", https, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := registryapi.RealmURL(tt.realm, tt.registry)
			if tt.ok {
				require.NoError(t, err)
				require.Equal(t, tt.realm, u.String())
				return
			}
			require.ErrorContains(t, err, "is not an https URL of a token endpoint")
		})
	}
}
