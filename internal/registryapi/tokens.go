package registryapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Credentials authenticates a client to one registry: Basic auth with Username and Password when it asks for
// Basic, and the bearer tokens of the distribution token protocol when it asks for Bearer (the realm is given the
// same name and password, as Docker, containerd and go-containerregistry do). Tokens are kept per scope until
// shortly before they expire; a request the registry refuses with a Bearer challenge is sent once more with a token
// for the challenge's scope.
//
// Do sends only requests without a body, which can be sent twice.
type Credentials struct {
	// Client sends the requests and the token requests.
	Client *http.Client
	// Username and Password; empty sends no credentials (a registry that allows anonymous tokens still gets one).
	Username, Password string
	// Now defaults to time.Now.
	Now func() time.Time

	mu     sync.Mutex
	tokens map[string]bearerToken // by scope
	bearer bool                   // the registry asked for Bearer: stop sending Basic
}

type bearerToken struct {
	value   string
	expires time.Time
}

// defaultTokenLifetime is what the token protocol says a token without expires_in lives.
const defaultTokenLifetime = 60 * time.Second

// tokenMargin is how long before its expiry a token is no longer sent.
const tokenMargin = 10 * time.Second

// Errors of the token protocol, wrapped with the endpoint, the user (never the password) and the scope.
var (
	// ErrTokenRefused: the token endpoint refused the credentials.
	ErrTokenRefused = errors.New("the token endpoint refused the credentials")
	// ErrScopeNotGranted: the token endpoint gave a token, but not for the access the registry asked for.
	ErrScopeNotGranted = errors.New("the credentials are not granted the access")
)

func (c *Credentials) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Do sends req (a request without a body) with credentials for scope ("repository:<name>:pull"), as the
// registry last asked for them, and answers one 401 challenge.
func (c *Credentials) Do(req *http.Request, scope string) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		return nil, fmt.Errorf("registry request %s %s has a body, which cannot be sent twice", req.Method, req.URL.Redacted())
	}
	c.authorize(req, scope)
	resp, err := c.Client.Do(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	challenges, perr := ParseChallenges(resp.Header.Get("WWW-Authenticate"))
	var bearer *Challenge
	for i := range challenges {
		if strings.EqualFold(challenges[i].Scheme, "Bearer") {
			bearer = &challenges[i]
		}
	}
	if perr != nil || bearer == nil {
		return resp, nil // Basic was sent, or nothing can be sent: the 401 is the answer
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if s, ok := bearer.Param("scope"); ok && s != "" {
		scope = s
	}
	tok, err := c.fetchToken(req.Context(), req.URL, bearer, scope)
	if err != nil {
		return nil, err
	}
	retry := req.Clone(req.Context())
	retry.Header.Set("Authorization", "Bearer "+tok)
	resp, err = c.Client.Do(retry)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// A fresh token for the scope the registry asked for, refused as too narrow: the token endpoint did not grant
	// it to these credentials.
	if cs, _ := ParseChallenges(resp.Header.Get("WWW-Authenticate")); len(cs) > 0 {
		if e, _ := cs[0].Param("error"); e == "insufficient_scope" {
			resp.Body.Close()
			return nil, fmt.Errorf("%w: the token endpoint gave %s no access %q", ErrScopeNotGranted, c.who(), scope)
		}
	}
	return resp, nil
}

func (c *Credentials) who() string {
	if c.Username == "" {
		return "anonymous requests"
	}
	return "user " + c.Username
}

// authorize sets the Authorization header: a live token for scope, else Basic until the registry asked for Bearer.
func (c *Credentials) authorize(req *http.Request, scope string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tokens[scope]; ok && c.now().Before(t.expires) {
		req.Header.Set("Authorization", "Bearer "+t.value)
		return
	}
	if c.Username != "" && !c.bearer {
		req.SetBasicAuth(c.Username, c.Password)
	}
}

// fetchToken asks the challenge's realm for a token for scope. The credentials go only to a realm RealmURL
// accepts: over HTTPS, or over HTTP when the registry itself is plain HTTP.
func (c *Credentials) fetchToken(ctx context.Context, registry *url.URL, ch *Challenge, scope string) (string, error) {
	r, _ := ch.Param("realm")
	realm, err := RealmURL(r, registry)
	if err != nil {
		return "", fmt.Errorf("the registry %s names no usable token realm: %w", registry.Host, err)
	}
	q := realm.Query()
	if svc, ok := ch.Param("service"); ok {
		q.Set("service", svc)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", err
	}
	if c.Username != "" {
		req.SetBasicAuth(c.Username, c.Password)
	}
	asked := c.now()
	resp, err := c.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking the token endpoint %s: %w", realm.Host+realm.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("reading the answer of the token endpoint %s: %w", realm.Host+realm.Path, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", fmt.Errorf("%w: %s answered %d to %s for scope %q%s", ErrTokenRefused, realm.Host+realm.Path, resp.StatusCode, c.who(), scope, detail(body))
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("the token endpoint %s answered %d%s", realm.Host+realm.Path, resp.StatusCode, detail(body))
	}
	var t struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return "", fmt.Errorf("the token endpoint %s answered no JSON: %w", realm.Host+realm.Path, err)
	}
	value := t.Token
	if value == "" {
		value = t.AccessToken
	}
	if value == "" {
		return "", fmt.Errorf("the token endpoint %s answered no token", realm.Host+realm.Path)
	}
	life := defaultTokenLifetime
	if t.ExpiresIn > 0 {
		life = time.Duration(t.ExpiresIn) * time.Second
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens == nil {
		c.tokens = map[string]bearerToken{}
	}
	c.tokens[scope] = bearerToken{value: value, expires: asked.Add(life - min(tokenMargin, life/2))}
	c.bearer = true
	return value, nil
}

// detail is ": <the error message>" of a registry error body, or nothing.
func detail(body []byte) string {
	if m := ErrorMessage(body); m != "" {
		return ": " + m
	}
	return ""
}
