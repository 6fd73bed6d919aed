package parentgate

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/registryapi"
	"github.com/connected-registry/connected-registry/internal/testing/syncbuf"
)

// tokenParent stands in for a registry with token auth, as ACR answers: /v2/ challenges with a Bearer realm on
// its own host, the realm gives scoped tokens for the sync token's Basic credentials, and blobs are sent from a
// storage host with a signed URL. The real one (a Distribution process with auth.token) is in the registry
// tests; this one counts what the gate sends.
type tokenParent struct {
	*httptest.Server
	storage *httptest.Server

	user, password string
	lifetime       int // expires_in of the tokens, seconds
	content        []byte
	path           string // the blob's path in repository test/app

	mu          sync.Mutex
	tokens      map[string]string // token → scope
	tokenCalls  []string          // scope of every token request
	refusals    atomic.Int32
	revoked     atomic.Bool // every token issued so far is refused
	storageAuth []string    // Authorization headers the storage host got
	storageGets atomic.Int32
	realmHost   string // host:port of the realm; empty: the parent's own
}

func newTokenParent(t *testing.T) *tokenParent {
	t.Helper()
	p := &tokenParent{user: "sync-token", password: "s3cret-sync-password", lifetime: 300, tokens: map[string]string{}}
	p.content, p.path = blob(256 << 10)
	p.storage = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.storageAuth = append(p.storageAuth, r.Header.Get("Authorization"))
		p.mu.Unlock()
		if r.URL.Query().Get("sig") != "signed" {
			http.Error(w, "unsigned", http.StatusForbidden)
			return
		}
		p.storageGets.Add(1)
		w.Write(p.content)
	}))
	t.Cleanup(p.storage.Close)
	p.Server = httptest.NewTLSServer(p)
	t.Cleanup(p.Server.Close)
	return p
}

func (p *tokenParent) host() string { return p.Listener.Addr().String() }

func (p *tokenParent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth2/token" {
		p.token(w, r)
		return
	}
	scope := ""
	if m := strings.TrimPrefix(r.URL.Path, "/v2/"); m != "" && r.URL.Path != "/v2/" {
		scope = "repository:" + m[:strings.Index(m+"/", "/")] + "/" + strings.Split(m, "/")[1] + ":pull"
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	p.mu.Lock()
	granted, known := p.tokens[tok]
	p.mu.Unlock()
	if !ok || !known || p.revoked.Load() || (scope != "" && granted != scope) {
		realm := p.realmHost
		if realm == "" {
			realm = p.host()
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="https://%s/oauth2/token",service="%s"`, realm, p.host()))
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
		return
	}
	switch {
	case r.URL.Path == "/v2/":
		io.WriteString(w, "{}")
	case r.URL.Path == p.path:
		http.Redirect(w, r, p.storage.URL+"/blobs/data?sig=signed", http.StatusTemporaryRedirect)
	default:
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		io.WriteString(w, `{"schemaVersion":2}`)
	}
}

func (p *tokenParent) token(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != p.user || pass != p.password {
		p.refusals.Add(1)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}`, http.StatusUnauthorized)
		return
	}
	scope := r.URL.Query().Get("scope")
	p.mu.Lock()
	p.tokenCalls = append(p.tokenCalls, scope)
	tok := fmt.Sprintf("token-%d", len(p.tokenCalls))
	p.tokens[tok] = scope
	p.mu.Unlock()
	p.revoked.Store(false)
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": p.lifetime})
}

func (p *tokenParent) calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tokenCalls...)
}

// registryClient asks the gate as Distribution's proxy does: the challenge of /v2/, then for each request a
// token from the realm (when the realm is on the gate's host:port, the only one Distribution keeps), then the
// request with it.
type registryClient struct {
	t              *testing.T
	gate           *url.URL
	user, password string
}

func (c registryClient) realm() (*url.URL, string) {
	c.t.Helper()
	resp, err := http.Get(c.gate.String() + "/v2/")
	require.NoError(c.t, err)
	resp.Body.Close()
	require.Equal(c.t, http.StatusUnauthorized, resp.StatusCode)
	cs, err := registryapi.ParseChallenges(resp.Header.Get("WWW-Authenticate"))
	require.NoError(c.t, err)
	require.Len(c.t, cs, 1)
	realm, _ := cs[0].Param("realm")
	service, _ := cs[0].Param("service")
	u, err := url.Parse(realm)
	require.NoError(c.t, err)
	require.Equal(c.t, c.gate.Host, u.Host, "Distribution keeps a Bearer challenge only when its realm is on the remoteurl's host:port")
	return u, service
}

func (c registryClient) token(scope string) (int, string) {
	c.t.Helper()
	realm, service := c.realm()
	q := realm.Query()
	q.Set("service", service)
	q.Set("scope", scope)
	q.Set("account", c.user)
	realm.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodGet, realm.String(), nil)
	req.SetBasicAuth(c.user, c.password)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.AccessToken
}

func (c registryClient) get(path string) (int, []byte) {
	c.t.Helper()
	status, tok := c.token("repository:test/app:pull")
	require.Equal(c.t, http.StatusOK, status)
	resp, body, err := getWith(c.t, c.gate.String()+path, http.Header{"Authorization": {"Bearer " + tok}})
	require.NoError(c.t, err)
	return resp.StatusCode, body
}

func tokenGate(t *testing.T, p *tokenParent) (*Gate, registryClient, *syncbuf.Buffer) {
	t.Helper()
	u, err := url.Parse(p.URL)
	require.NoError(t, err)
	log := &syncbuf.Buffer{}
	g := newGate()
	g.ResponseTimeout = 5 * time.Second
	g.Parent = u
	g.TLSConfig = p.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	g.SpoolDir = t.TempDir()
	g.Log = slog.New(slog.NewTextHandler(log, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the gate's log:\n%s", log)
		}
	})
	return g, registryClient{t: t, gate: startGate(t, g), user: p.user, password: p.password}, log
}

func TestTokenAuth(t *testing.T) {
	t.Parallel()

	t.Run("a registry behind the gate should authenticate as it would to the parent: realm on the gate, token from the parent's realm", func(t *testing.T) {
		t.Parallel()
		p := newTokenParent(t)
		_, c, _ := tokenGate(t, p)
		status, body := c.get("/v2/test/app/manifests/v1")
		require.Equal(t, http.StatusOK, status, string(body))
		require.Equal(t, `{"schemaVersion":2}`, string(body))
		require.Equal(t, []string{"repository:test/app:pull"}, p.calls())
	})

	t.Run("a token should be fetched once per scope and handed out again until shortly before it expires", func(t *testing.T) {
		t.Parallel()
		p := newTokenParent(t)
		p.lifetime = 100
		g, c, _ := tokenGate(t, p)
		now := time.Now()
		var offset atomic.Int64
		g.now = func() time.Time { return now.Add(time.Duration(offset.Load())) }

		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				status, _ := c.token("repository:test/app:pull")
				require.Equal(t, http.StatusOK, status)
			})
		}
		wg.Wait()
		status, _ := c.token("repository:test/other:pull")
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, []string{"repository:test/app:pull", "repository:test/other:pull"}, p.calls(),
			"concurrent requests for one scope should share one token")

		offset.Store(int64(79 * time.Second)) // 100 s less a fifth
		c.token("repository:test/app:pull")
		require.Len(t, p.calls(), 2, "a token with a fifth of its life left is still handed out")
		offset.Store(int64(81 * time.Second))
		c.token("repository:test/app:pull")
		require.Len(t, p.calls(), 3, "a token about to expire must be fetched again")
	})

	t.Run("a token the parent refuses should be renewed and the request retried once, unseen by the registry", func(t *testing.T) {
		t.Parallel()
		p := newTokenParent(t)
		_, c, _ := tokenGate(t, p)
		status, _ := c.get("/v2/test/app/manifests/v1")
		require.Equal(t, http.StatusOK, status)
		p.revoked.Store(true)
		status, body := c.get("/v2/test/app/manifests/v1")
		require.Equal(t, http.StatusOK, status, string(body))
		require.Len(t, p.calls(), 2)
	})

	t.Run("a blob on the storage host should be fetched there once, without the registry's credentials", func(t *testing.T) {
		t.Parallel()
		p := newTokenParent(t)
		_, c, _ := tokenGate(t, p)
		status, body := c.get(p.path)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, p.content, body)
		require.EqualValues(t, 1, p.storageGets.Load())
		require.Equal(t, []string{""}, p.storageAuth, "the storage host must never get the registry's Authorization")
	})

	t.Run("a wrong sync token password should be logged with the account and the parent's answer, never the password", func(t *testing.T) {
		t.Parallel()
		p := newTokenParent(t)
		_, c, log := tokenGate(t, p)
		c.password = "wrong-password-value"
		status, _ := c.token("repository:test/app:pull")
		require.Equal(t, http.StatusUnauthorized, status, "the registry gets the parent's answer")
		realm, service := c.realm()
		q := realm.Query()
		q.Set("service", service)
		q.Set("account", c.user)
		realm.RawQuery = q.Encode()
		req, _ := http.NewRequest(http.MethodGet, realm.String(), nil)
		req.SetBasicAuth(c.user, c.password)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.JSONEq(t, `{"errors":[{"code":"UNAUTHORIZED","message":"the parent's token endpoint refused the sync token \"sync-token\" with 401 Unauthorized: UNAUTHORIZED incorrect username or password"}]}`,
			string(body), "the registry logs this message: it names the sync token and the parent's answer")
		require.Eventually(t, func() bool { return strings.Contains(log.String(), "token endpoint refused the sync token") }, 5*time.Second, 10*time.Millisecond)
		require.Contains(t, log.String(), `account=sync-token`)
		require.Contains(t, log.String(), `401 Unauthorized`)
		require.Contains(t, log.String(), `incorrect username or password`)
		require.NotContains(t, log.String(), "wrong-password-value")
		require.NotContains(t, log.String(), p.password)
	})

	t.Run("a realm the parent never announced should be refused; one it announces should be learned after a restart", func(t *testing.T) {
		t.Parallel()
		p := newTokenParent(t)
		_, c, _ := tokenGate(t, p)
		other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Error("the gate asked a realm the parent never announced")
		}))
		defer other.Close()
		resp, err := http.Get(c.gate.String() + TokenPath + "?realm=" + url.QueryEscape(other.URL+"/token") + "&scope=x")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode)

		// A gate that never saw the challenge (restarted) asks the parent for it.
		resp, err = http.Get(c.gate.String() + TokenPath + "?realm=" + url.QueryEscape(p.URL+"/oauth2/token") + "&scope=repository:test/app:pull&service=" + p.host())
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the parent's own realm answered (without credentials)")
	})

	t.Run("an unreachable token endpoint and an unreachable storage host should each be named in the log", func(t *testing.T) {
		t.Parallel()
		p := newTokenParent(t)
		closed := silentListenerClosed(t)
		p.realmHost = closed
		_, c, log := tokenGate(t, p)
		status, _ := c.token("repository:test/app:pull")
		require.Equal(t, http.StatusBadGateway, status)
		require.Contains(t, log.String(), "token endpoint unreachable")
		require.Contains(t, log.String(), closed)

		p2 := newTokenParent(t)
		_, c2, log2 := tokenGate(t, p2)
		p2.storage.Close()
		status, _ = c2.get(p2.path)
		require.Equal(t, http.StatusBadGateway, status)
		require.Contains(t, log2.String(), "storage host unreachable")
	})
}

// silentListenerClosed is a host:port nothing listens on.
func silentListenerClosed(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}
