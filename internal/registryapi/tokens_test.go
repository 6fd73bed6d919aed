package registryapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/registryapi"
)

// tokenRegistry is a registry of the distribution token protocol: every /v2/ request needs a bearer token of its
// token endpoint, which gives user "sync" (password "pw") tokens of expiresIn seconds for repository:app:pull only.
type tokenRegistry struct {
	*httptest.Server
	expiresIn int
	realm     string // default: this server's /token

	mu          sync.Mutex
	tokenAsks   int
	basicAtV2   int
	lastScope   string
	issued      map[string]string // token -> scope
	tokenSerial int
}

func newTokenRegistry(t *testing.T) *tokenRegistry {
	r := &tokenRegistry{expiresIn: 300, issued: map[string]string{}}
	r.Server = httptest.NewTLSServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *tokenRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.URL.Path == "/token" {
		r.tokenAsks++
		u, p, ok := req.BasicAuth()
		if !ok || u != "sync" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"wrong credentials"}]}`)
			return
		}
		scope := req.URL.Query().Get("scope")
		r.lastScope = scope
		if scope != "" && scope != "repository:app:pull" {
			scope = "" // granted nothing of it
		}
		r.tokenSerial++
		tok := fmt.Sprintf("token-%d", r.tokenSerial)
		r.issued[tok] = scope
		_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_in": r.expiresIn})
		return
	}
	if _, _, ok := req.BasicAuth(); ok {
		r.basicAtV2++
	}
	realm := r.realm
	if realm == "" {
		realm = r.URL + "/token"
	}
	need := ""
	if name, ok := strings.CutPrefix(req.URL.Path, "/v2/"); ok && name != "" {
		repo, _, _ := strings.Cut(name, "/manifests/")
		need = "repository:" + repo + ":pull"
	}
	tok, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	scope, ok := r.issued[tok]
	if !ok || need != "" && scope != need {
		ch := fmt.Sprintf(`Bearer realm=%q,service="registry.test"`, realm)
		if need != "" {
			ch += fmt.Sprintf(`,scope=%q`, need)
		}
		if ok {
			ch += `,error="insufficient_scope"` // as Distribution says of a valid token without the access
		}
		w.Header().Set("WWW-Authenticate", ch)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	fmt.Fprint(w, "ok")
}

func (r *tokenRegistry) asks() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tokenAsks
}

func get(t *testing.T, c *registryapi.Credentials, url, scope string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := c.Do(req, scope)
	if resp != nil {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

func TestCredentials(t *testing.T) {
	t.Parallel()

	t.Run("a Bearer challenge should be answered with a token of the realm, kept for its scope until it nears expiry", func(t *testing.T) {
		t.Parallel()
		reg := newTokenRegistry(t)
		now := time.Unix(1e9, 0)
		c := &registryapi.Credentials{Client: reg.Client(), Username: "sync", Password: "pw", Now: func() time.Time { return now }}
		for range 3 {
			resp, err := get(t, c, reg.URL+"/v2/app/manifests/v1", "repository:app:pull")
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
		}
		require.Equal(t, 1, reg.asks(), "one token for three requests of one scope")
		require.Equal(t, "repository:app:pull", reg.lastScope)
		require.Equal(t, 1, reg.basicAtV2, "Basic goes to the registry only until it asks for Bearer")

		now = now.Add(295 * time.Second) // inside the margin before expiry: a new token
		resp, err := get(t, c, reg.URL+"/v2/app/manifests/v1", "repository:app:pull")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, 2, reg.asks())
	})

	t.Run("a token the registry no longer takes should be replaced once, and a scope not granted should fail with ErrScopeNotGranted", func(t *testing.T) {
		t.Parallel()
		reg := newTokenRegistry(t)
		c := &registryapi.Credentials{Client: reg.Client(), Username: "sync", Password: "pw"}
		_, err := get(t, c, reg.URL+"/v2/app/manifests/v1", "repository:app:pull")
		require.NoError(t, err)
		reg.mu.Lock()
		clear(reg.issued) // the registry restarted with new keys
		reg.mu.Unlock()
		resp, err := get(t, c, reg.URL+"/v2/app/manifests/v1", "repository:app:pull")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, 2, reg.asks())

		_, err = get(t, c, reg.URL+"/v2/other/manifests/v1", "repository:other:pull")
		require.ErrorIs(t, err, registryapi.ErrScopeNotGranted)
		require.ErrorContains(t, err, `user sync no access "repository:other:pull"`)
	})

	t.Run("refused credentials should fail with ErrTokenRefused, naming the user but never the password", func(t *testing.T) {
		t.Parallel()
		reg := newTokenRegistry(t)
		c := &registryapi.Credentials{Client: reg.Client(), Username: "sync", Password: "secret-pw"}
		_, err := get(t, c, reg.URL+"/v2/app/manifests/v1", "repository:app:pull")
		require.Error(t, err)
		require.True(t, errors.Is(err, registryapi.ErrTokenRefused), "%v", err)
		require.Contains(t, err.Error(), "user sync")
		require.Contains(t, err.Error(), "UNAUTHORIZED wrong credentials")
		require.NotContains(t, err.Error(), "secret-pw")
	})

	t.Run("a realm over plain HTTP, for a registry over HTTPS, should get no credentials", func(t *testing.T) {
		t.Parallel()
		reg := newTokenRegistry(t)
		reg.realm = "http://tokens.example/token"
		c := &registryapi.Credentials{Client: reg.Client(), Username: "sync", Password: "pw"}
		_, err := get(t, c, reg.URL+"/v2/app/manifests/v1", "repository:app:pull")
		require.ErrorContains(t, err, `realm "http://tokens.example/token" is not an https URL of a token endpoint`)
		require.Zero(t, reg.asks())
	})

	t.Run("a request with a body should be refused, since it cannot be sent twice", func(t *testing.T) {
		t.Parallel()
		c := &registryapi.Credentials{Client: http.DefaultClient}
		req, err := http.NewRequest(http.MethodPut, "https://registry.test/v2/app/blobs/uploads/x", strings.NewReader("x"))
		require.NoError(t, err)
		_, err = c.Do(req, "")
		require.ErrorContains(t, err, "has a body")
	})
}
