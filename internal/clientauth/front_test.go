package clientauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFrontRoutesTheTokenPathToTheIssuer: the front answers /token with the issuer and passes every other
// request to the registry as it came (path, query, Host, body), streamed back unchanged.
func TestFrontRoutesTheTokenPathToTheIssuer(t *testing.T) {
	t.Parallel()
	type seen struct{ host, uri, fwd string }
	got := make(chan seen, 1)
	registry := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.RequestURI, r.Header.Get("X-Forwarded-For")}
		w.Header().Set("Location", "https://"+r.Host+"/v2/next")
		w.WriteHeader(http.StatusTemporaryRedirect)
		_, _ = io.WriteString(w, "from the registry")
	}))
	t.Cleanup(registry.Close)
	issuer := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "from the issuer") })
	u, err := url.Parse(registry.URL)
	require.NoError(t, err)
	front := httptest.NewServer(Front(issuer, u, registry.Client().Transport))
	t.Cleanup(front.Close)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, tc := range []struct{ name, path, wantBody, wantURI string }{
		{"the token path should reach the issuer", "/token?service=x&scope=repository:a:pull", "from the issuer", ""},
		{"a registry path should reach the registry unchanged", "/v2/library/app/manifests/1.0?x=1", "from the registry", "/v2/library/app/manifests/1.0?x=1"},
		{"an unclean path should reach the registry, not be redirected", "/v2/a/../b/tags/list", "from the registry", "/v2/a/../b/tags/list"},
		{"a path under the token path should reach the registry", "/token/x", "from the registry", "/token/x"},
	} {
		req, err := http.NewRequest(http.MethodGet, front.URL, nil)
		require.NoError(t, err)
		req.URL.Opaque = tc.path // sent as written
		req.Host = "10.96.0.50:443"
		resp, err := c.Do(req)
		require.NoError(t, err, tc.name)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, tc.wantBody, string(b), tc.name)
		if tc.wantURI == "" {
			continue
		}
		// The registry's handler sends before it answers, so what reached it is there once the answer is read.
		var s seen
		select {
		case s = <-got:
		default:
			t.Errorf("%s: the request never reached the registry (answered %d)", tc.name, resp.StatusCode)
			continue
		}
		assert.Equal(t, tc.wantURI, s.uri, tc.name)
		assert.Equal(t, "10.96.0.50:443", s.host, "%s: the Host the client asked", tc.name)
		assert.Equal(t, "127.0.0.1", s.fwd, tc.name)
		assert.Equal(t, "https://10.96.0.50:443/v2/next", resp.Header.Get("Location"), "%s: the registry's URLs name the client's host", tc.name)
	}
}
