package parentgate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/connected-registry/connected-registry/internal/registryapi"
)

// Token handling limits.
const (
	// maxTokenBody caps a token endpoint's answer; a token is a few KiB.
	maxTokenBody = 1 << 20
	// defaultTokenLifetime is a token's lifetime when the answer gives none (the distribution token spec).
	defaultTokenLifetime = 60 * time.Second
	// tokenMargin is taken off a token's lifetime, at most, so it is never handed out about to expire.
	tokenMargin = 30 * time.Second
	// maxTokens bounds the cache: one token per repository the registry pulls.
	maxTokens = 4096
	// refusalEvery is how often one refusal of the parent is logged.
	refusalEvery = time.Minute
)

// rewriteChallenges points the realm of every Bearer challenge in resp at the gate's token path on gateHost, so
// the registry, whose remoteurl is the gate, keeps the challenge and asks the gate for its tokens. The parent's
// realm becomes one the gate may reach.
func (g *Gate) rewriteChallenges(resp *http.Response, gateHost string) {
	values := resp.Header.Values("WWW-Authenticate")
	if len(values) == 0 || resp.Request == nil || !strings.EqualFold(hostPort80443(resp.Request.URL), hostPort80443(g.Parent)) {
		return
	}
	rewritten := make([]string, 0, len(values))
	for _, v := range values {
		cs, err := registryapi.ParseChallenges(v)
		if err != nil {
			rewritten = append(rewritten, v)
			continue
		}
		for i, c := range cs {
			if !strings.EqualFold(c.Scheme, "bearer") {
				continue
			}
			realm, ok := c.Param("realm")
			if !ok {
				continue
			}
			u, err := g.realmURL(realm)
			if err != nil {
				g.logger().Warn("the parent announced a token realm the gate cannot use", "realm", realm, "err", err)
				continue
			}
			g.allowRealm(u)
			cs[i].Set("realm", (&url.URL{Scheme: "http", Host: gateHost, Path: TokenPath, RawQuery: url.Values{"realm": {u.String()}}.Encode()}).String())
		}
		rewritten = append(rewritten, registryapi.FormatChallenges(cs))
	}
	resp.Header["Www-Authenticate"] = rewritten
}

// realmURL checks a realm the parent announced (registryapi.RealmURL).
func (g *Gate) realmURL(realm string) (*url.URL, error) { return registryapi.RealmURL(realm, g.Parent) }

func (g *Gate) allowRealm(u *url.URL) {
	g.allow(hostPort80443(u), roleRealm)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.realms == nil {
		g.realms = map[string]bool{}
	}
	g.realms[u.String()] = true
}

func (g *Gate) realmKnown(u *url.URL) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.realms[u.String()]
}

// learnRealms asks the parent for its challenge, as the registry does when it starts: a gate that restarted
// learns the realms the registry already knows.
func (g *Gate) learnRealms(ctx context.Context, gateHost string) error {
	u := *g.Parent
	u.Path = strings.TrimSuffix(g.Parent.Path, "/") + "/v2/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := g.do(req, gateHost)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxTokenBody))
	return resp.Body.Close()
}

// token answers a token request of the registry from the cache, or from the realm the parent announced, which
// the realm query parameter names. Every other parameter and the registry's credentials go to the realm as
// they came.
func (g *Gate) token(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	realm, err := g.realmURL(q.Get("realm"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !g.realmKnown(realm) {
		if err := g.learnRealms(r.Context(), r.Host); err != nil {
			g.badGateway(w, err)
			return
		}
		if !g.realmKnown(realm) {
			http.Error(w, fmt.Sprintf("the parent does not announce the token realm %s", realm), http.StatusForbidden)
			return
		}
	}
	target := *realm
	tq := target.Query()
	q.Del("realm")
	for k, vs := range q {
		tq[k] = append(tq[k], vs...)
	}
	target.RawQuery = tq.Encode()
	auth := r.Header.Get("Authorization")
	key := target.String() + "\x00" + auth
	fetch := func(ctx context.Context) (*tokenAnswer, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
		if err != nil {
			return nil, err
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return g.fetchToken(req)
	}
	a, err := g.tokens.get(r.Context(), key, g.clock(), fetch)
	if err != nil {
		g.badGateway(w, err)
		return
	}
	for k, vs := range a.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// fetchToken asks a token endpoint. A refusal is logged with the account it was for, never the password.
func (g *Gate) fetchToken(req *http.Request) (*tokenAnswer, error) {
	start := g.clock()()
	resp, err := g.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the token endpoint %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of the token endpoint %s: %w", req.URL.Host, err)
	}
	a := &tokenAnswer{status: resp.StatusCode, header: http.Header{}, body: body}
	for _, h := range []string{"Content-Type", "Www-Authenticate"} {
		if v := resp.Header.Values(h); len(v) > 0 {
			a.header[h] = v
		}
	}
	if resp.StatusCode != http.StatusOK {
		g.reportRefusal(req, resp, true, body)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			// Distribution logs the message of an error answer: let it name the sync token and the answer.
			a.body = refusalAnswer(accountOf(req), resp.Status, registryapi.ErrorMessage(body))
			a.header = http.Header{"Content-Type": {"application/json"}}
		}
		return a, nil
	}
	var t struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return a, nil // not cached; the registry says what it makes of it
	}
	a.token = t.AccessToken
	if a.token == "" {
		a.token = t.Token
	}
	lifetime := time.Duration(t.ExpiresIn) * time.Second
	if t.ExpiresIn <= 0 {
		lifetime = defaultTokenLifetime
	}
	a.until = start.Add(lifetime - min(tokenMargin, lifetime/5))
	return a, nil
}

// reportRefusal logs, once a minute for each account and answer, that the parent or its token endpoint refused
// the registry's credentials, naming the account (the sync token) and the answer.
func (g *Gate) reportRefusal(req *http.Request, resp *http.Response, tokenRequest bool, body []byte) {
	account := accountOf(req)
	var what string
	switch {
	case tokenRequest:
		what = "the parent's token endpoint refused the sync token"
	case strings.HasPrefix(strings.ToLower(req.Header.Get("Authorization")), "bearer ") && req.Context().Value(fromPeerKey{}) != nil:
		return // another replica's token: its gate renews it and asks again (askOwner), and reports a refusal
	case strings.HasPrefix(strings.ToLower(req.Header.Get("Authorization")), "bearer "):
		what = "the parent refused the token its token endpoint gave for this repository"
	case req.Header.Get("Authorization") != "":
		what = "the parent refused the sync token"
	default:
		return // a challenge: the registry asks for a token next
	}
	key := what + "\x00" + account + "\x00" + resp.Status
	now := g.clock()()
	g.mu.Lock()
	if g.reported == nil {
		g.reported = map[string]time.Time{}
	}
	last, seen := g.reported[key]
	if !seen || now.Sub(last) >= refusalEvery {
		g.reported[key] = now
	}
	g.mu.Unlock()
	if seen && now.Sub(last) < refusalEvery {
		return
	}
	detail := registryapi.ErrorMessage(body)
	g.logger().Warn(what+": check the connection string's SyncTokenName and SyncTokenPassword, or registry.parent.credentialsSecret",
		"account", account, "host", req.URL.Host, "path", req.URL.Path, "answer", resp.Status, "detail", detail)
}

// accountOf names the account of a request: the account parameter of a token request, or the user of Basic
// credentials.
func accountOf(req *http.Request) string {
	if a := req.URL.Query().Get("account"); a != "" {
		return a
	}
	if user, _, ok := req.BasicAuth(); ok {
		return user
	}
	return ""
}

// refusalAnswer is an error answer of the distribution API that says which account the token endpoint refused,
// and how.
func refusalAnswer(account, status, detail string) []byte {
	msg := fmt.Sprintf("the parent's token endpoint refused the sync token %q with %s", account, status)
	if detail != "" {
		msg += ": " + detail
	}
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": "UNAUTHORIZED", "message": msg}}})
	return b
}

// retryWithFreshToken returns out again with a new token, when the parent refused a token the gate handed out
// (expired early, or revoked): the token is dropped, and the request it answered asked again.
func (g *Gate) retryWithFreshToken(out *http.Request) (*http.Request, bool) {
	tok, ok := strings.CutPrefix(out.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, false
	}
	a, err := g.tokens.renew(out.Context(), tok, g.clock())
	if err != nil || a == nil || a.token == "" {
		return nil, false
	}
	retry := out.Clone(out.Context())
	retry.Header.Set("Authorization", "Bearer "+a.token)
	return retry, true
}

// tokenAnswer is a token endpoint's answer as the registry gets it.
type tokenAnswer struct {
	status int
	header http.Header
	body   []byte
	token  string    // empty: not cached
	until  time.Time // when the gate stops handing it out
	fetch  func(context.Context) (*tokenAnswer, error)
}

// tokenCache keeps tokens until shortly before they expire, keyed by the request that got them (realm,
// service, scopes and credentials), and lets concurrent requests for one token share one fetch.
type tokenCache struct {
	mu      sync.Mutex
	answers map[string]*tokenAnswer
	byToken map[string]string // token → key
	calls   map[string]*tokenCall
}

type tokenCall struct {
	done   chan struct{}
	answer *tokenAnswer
	err    error
}

// get returns the answer for key: cached while it is valid, else fetched once for all who ask at the same time.
func (c *tokenCache) get(ctx context.Context, key string, now func() time.Time, fetch func(context.Context) (*tokenAnswer, error)) (*tokenAnswer, error) {
	c.mu.Lock()
	if a, ok := c.answers[key]; ok && now().Before(a.until) {
		c.mu.Unlock()
		return a, nil
	}
	call, ok := c.calls[key]
	if !ok {
		call = &tokenCall{done: make(chan struct{})}
		if c.calls == nil {
			c.calls = map[string]*tokenCall{}
		}
		c.calls[key] = call
		go c.run(key, call, now, fetch)
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.answer, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run fetches for a call, detached from the request that started it: others may wait on it.
func (c *tokenCache) run(key string, call *tokenCall, now func() time.Time, fetch func(context.Context) (*tokenAnswer, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeLimit+tokenFetchLimit)
	defer cancel()
	a, err := fetch(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.calls, key)
	call.answer, call.err = a, err
	close(call.done)
	if err != nil || a.token == "" || !now().Before(a.until) {
		return
	}
	a.fetch = fetch
	if c.answers == nil {
		c.answers, c.byToken = map[string]*tokenAnswer{}, map[string]string{}
	}
	if old, ok := c.answers[key]; ok {
		delete(c.byToken, old.token)
	}
	if len(c.answers) >= maxTokens {
		c.prune(now())
	}
	c.answers[key] = a
	c.byToken[a.token] = key
}

// tokenFetchLimit bounds one token request after its connection is up.
const tokenFetchLimit = 15 * time.Second

// prune drops expired answers, and any answer when none has expired.
func (c *tokenCache) prune(now time.Time) {
	for k, a := range c.answers {
		if !now.Before(a.until) {
			delete(c.answers, k)
			delete(c.byToken, a.token)
		}
	}
	for k, a := range c.answers {
		if len(c.answers) < maxTokens {
			return
		}
		delete(c.answers, k)
		delete(c.byToken, a.token)
	}
}

// renew drops tok and fetches the answer for the request that got it again; nil when tok is not one the cache
// handed out.
func (c *tokenCache) renew(ctx context.Context, tok string, now func() time.Time) (*tokenAnswer, error) {
	c.mu.Lock()
	key, ok := c.byToken[tok]
	var fetch func(context.Context) (*tokenAnswer, error)
	if ok {
		fetch = c.answers[key].fetch
		delete(c.answers, key)
		delete(c.byToken, tok)
	}
	c.mu.Unlock()
	if !ok {
		return nil, nil
	}
	return c.get(ctx, key, now, fetch)
}
