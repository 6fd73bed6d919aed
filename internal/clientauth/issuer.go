package clientauth

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/connected-registry/connected-registry/internal/clock"
)

// Leeway is how long after a token's exp claim Distribution v3.1.2 still accepts it
// (registry/auth/token.Leeway, fixed). The issuer sets exp this much before the end of a token's lifetime.
const Leeway = 60 * time.Second

// MinLifetime is the shortest token lifetime: exp must not lie before the moment of issue.
const MinLifetime = Leeway + 30*time.Second

// TokenPath is where the issuer answers; the realm is https://<host:port>/token.
const TokenPath = "/token"

// Issuer answers token requests (Docker's token protocol, GET with Basic auth, and the OAuth2 password grant by
// POST) for the client tokens SetClients gave it.
type Issuer struct {
	// Service is the aud claim and the service parameter clients must send: Distribution's auth.token.service.
	Service string
	// Name is the iss claim: Distribution's auth.token.issuer.
	Name string
	// Lifetime is how long Distribution accepts an issued token (at least MinLifetime).
	Lifetime time.Duration
	// Keys sign the tokens.
	Keys *Keys
	// FailEvery and FailBurst shape the token buckets of failed attempts, per client IP and per token name:
	// FailBurst failures at once, then one more every FailEvery.
	FailEvery time.Duration
	FailBurst int
	// Clock is the time source (nil: the real clock).
	Clock clock.Clock
	// Log gets one line per refused and per issued token.
	Log *slog.Logger

	clients atomic.Pointer[Clients]
	once    sync.Once
	byIP    *limiter
	byName  *limiter
	dummyMu sync.Mutex
	dummy   map[int][]byte // bcrypt hashes of a random password by cost, for names that do not exist
	// dummyCost is the highest bcrypt cost of the tokens, the cost of an unknown name's comparison.
	dummyCost atomic.Int32
}

// SetClients replaces the client tokens; requests after it see only these.
func (is *Issuer) SetClients(c Clients) {
	is.clients.Store(&c)
	// Prepare the unknown-name hash at the highest cost in use, so the first unknown name is not faster.
	cost := bcrypt.DefaultCost
	for _, cl := range c {
		if n, err := bcrypt.Cost(cl.hash); err == nil && n > cost {
			cost = n
		}
	}
	is.dummyHash(cost)
	is.dummyCost.Store(int32(cost))
}

func (is *Issuer) dummyHash(cost int) []byte {
	is.dummyMu.Lock()
	defer is.dummyMu.Unlock()
	if is.dummy == nil {
		is.dummy = map[int][]byte{}
	}
	if h, ok := is.dummy[cost]; ok {
		return h
	}
	pw := make([]byte, 32)
	_, _ = rand.Read(pw)
	h, err := bcrypt.GenerateFromPassword(pw, cost)
	if err != nil {
		h = []byte("$2a$10$invalidinvalidinvalidinvalidinvalidinvalidinvalidinva")
	}
	is.dummy[cost] = h
	return h
}

func (is *Issuer) init() {
	is.once.Do(func() {
		every, burst := is.FailEvery, is.FailBurst
		if every <= 0 {
			every = 10 * time.Second
		}
		if burst <= 0 {
			burst = 5
		}
		is.byIP = newLimiter(every, burst)
		is.byName = newLimiter(every, burst)
		if is.Log == nil {
			is.Log = slog.New(slog.DiscardHandler)
		}
	})
}

// Access is one entry of the access claim, as Distribution reads it.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// claims are the JWT claims Distribution checks.
type claims struct {
	Issuer     string   `json:"iss"`
	Subject    string   `json:"sub"`
	Audience   string   `json:"aud"`
	Expiration int64    `json:"exp"`
	NotBefore  int64    `json:"nbf"`
	IssuedAt   int64    `json:"iat"`
	JWTID      string   `json:"jti"`
	Access     []Access `json:"access"`
}

// Grant returns what c gets of the scopes asked (each "type:name:action,action"): pull on the repositories its
// read patterns match, the catalog with metadata/read; everything else is dropped.
func Grant(c Client, scopes []string) []Access {
	out := []Access{}
	for _, scope := range scopes {
		typ, rest, ok := strings.Cut(scope, ":")
		i := strings.LastIndex(rest, ":")
		if !ok || i <= 0 {
			continue
		}
		name, actions := rest[:i], strings.Split(rest[i+1:], ",")
		var a Access
		switch {
		case typ == "repository" && slices.Contains(actions, "pull") && c.CanPull(name):
			a = Access{Type: "repository", Name: name, Actions: []string{"pull"}}
		case typ == "registry" && name == "catalog" && slices.Contains(actions, "*") && c.CanListCatalog():
			a = Access{Type: "registry", Name: "catalog", Actions: []string{"*"}}
		default:
			continue
		}
		if !slices.ContainsFunc(out, func(b Access) bool { return b.Type == a.Type && b.Name == a.Name }) {
			out = append(out, a)
		}
	}
	return out
}

// request is a token request, from either protocol.
type request struct {
	user, password string
	hasCreds       bool
	service        string
	scopes         []string
	oauth          bool
}

func parseRequest(r *http.Request) (request, error) {
	var q request
	switch r.Method {
	case http.MethodGet:
		q.user, q.password, q.hasCreds = r.BasicAuth()
		v := r.URL.Query()
		q.service = v.Get("service")
		for _, s := range v["scope"] {
			q.scopes = append(q.scopes, strings.Fields(s)...)
		}
	case http.MethodPost:
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			return q, fmt.Errorf("reading the form: %w", err)
		}
		q.oauth = true
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			return q, fmt.Errorf("grant_type %q is not supported: use password", gt)
		}
		q.user, q.password = r.PostForm.Get("username"), r.PostForm.Get("password")
		q.hasCreds = q.user != "" || q.password != ""
		q.service = r.PostForm.Get("service")
		for _, s := range r.PostForm["scope"] {
			q.scopes = append(q.scopes, strings.Fields(s)...)
		}
	default:
		return q, errMethod
	}
	return q, nil
}

var errMethod = errors.New("method not allowed: GET with Basic auth, or POST with grant_type=password")

// ServeHTTP is the token endpoint.
func (is *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	is.init()
	now := clock.Or(is.Clock).Now()
	ip := clientIP(r)
	if r.URL.Path != TokenPath {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "the token endpoint is "+TokenPath)
		return
	}
	q, err := parseRequest(r)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errMethod) {
			status = http.StatusMethodNotAllowed
		}
		writeError(w, status, "UNSUPPORTED", err.Error())
		return
	}
	if !q.hasCreds {
		// Anonymous requests get no token: with client tokens on, nothing is anonymous.
		is.Log.Info("token request without credentials refused", "ip", ip)
		w.Header().Set("WWW-Authenticate", `Basic realm="`+is.Service+`"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required: a client token's name and password")
		return
	}
	for _, l := range []struct {
		lim *limiter
		key string
	}{{is.byIP, ip}, {is.byName, q.user}} {
		if ok, wait := l.lim.allowed(l.key, now); !ok {
			is.Log.Warn("token request refused: too many failed attempts", "user", q.user, "ip", ip, "retryAfter", wait.Round(time.Second).String())
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "too many failed attempts: retry later")
			return
		}
	}
	c, reason := is.authenticate(q.user, q.password)
	if reason != "" {
		is.byIP.fail(ip, now)
		is.byName.fail(q.user, now)
		is.Log.Warn("token request refused", "user", q.user, "ip", ip, "reason", reason)
		w.Header().Set("WWW-Authenticate", `Basic realm="`+is.Service+`"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "incorrect name or password, or the token is disabled")
		return
	}
	if q.service != is.Service {
		is.Log.Warn("token request refused: wrong service", "user", q.user, "ip", ip, "service", q.service)
		writeError(w, http.StatusBadRequest, "DENIED", fmt.Sprintf("service %q is not this registry's (%q)", q.service, is.Service))
		return
	}
	access := Grant(c, q.scopes)
	token, err := is.Issue(c.Name, access, now)
	if err != nil {
		is.Log.Error("signing a token", "user", q.user, "err", err)
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "the token could not be signed")
		return
	}
	granted := make([]string, 0, len(access))
	for _, a := range access {
		granted = append(granted, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
	}
	is.Log.Info("token issued", "user", c.Name, "ip", ip, "asked", q.scopes, "granted", granted)
	resp := map[string]any{"access_token": token, "expires_in": int(is.Lifetime / time.Second),
		"issued_at": now.UTC().Format(time.RFC3339)}
	if !q.oauth {
		resp["token"] = token
	} else {
		resp["scope"] = strings.Join(granted, " ")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

// authenticate checks a name and password; a non-empty reason (for the log, never holding the password) says
// why they were refused. Every path costs one bcrypt comparison.
func (is *Issuer) authenticate(user, password string) (Client, string) {
	var cs Clients
	if p := is.clients.Load(); p != nil {
		cs = *p
	}
	c, known := cs[user]
	hash := c.hash
	if !known {
		cost := int(is.dummyCost.Load())
		if cost == 0 {
			cost = bcrypt.DefaultCost
		}
		hash = is.dummyHash(cost)
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	switch {
	case !known:
		return Client{}, "unknown token name"
	case err != nil:
		return Client{}, "wrong password"
	case c.disabled:
		return Client{}, "token disabled"
	}
	return c, ""
}

// Issue signs a token for subject with access, valid from now for Lifetime as Distribution counts it.
func (is *Issuer) Issue(subject string, access []Access, now time.Time) (string, error) {
	if is.Lifetime < MinLifetime {
		return "", fmt.Errorf("token lifetime %s is shorter than %s", is.Lifetime, MinLifetime)
	}
	if access == nil {
		access = []Access{}
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	return is.Keys.signWith(false, claims{
		Issuer: is.Name, Subject: subject, Audience: is.Service,
		Expiration: now.Add(is.Lifetime - Leeway).Unix(),
		NotBefore:  now.Unix(), IssuedAt: now.Unix(),
		JWTID: hex.EncodeToString(jti), Access: access,
	})
}

// ProbeToken is a token with no access signed by the next key: the registry answers GET /v2/ with it 200 only
// if it already trusts the next key, which is when Rotate is safe.
func (is *Issuer) ProbeToken(now time.Time) (string, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	return is.Keys.signWith(true, claims{
		Issuer: is.Name, Subject: "clientauth-probe", Audience: is.Service,
		Expiration: now.Add(MinLifetime - Leeway).Unix(), NotBefore: now.Unix(), IssuedAt: now.Unix(),
		JWTID: hex.EncodeToString(jti), Access: []Access{},
	})
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
