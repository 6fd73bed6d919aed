package clientauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connected-registry/connected-registry/internal/testing/syncbuf"
)

const service = "10.96.0.50:443"

func hash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	require.NoError(t, err)
	return string(h)
}

func entryYAML(t testing.TB, pw string, scope string) []byte {
	return []byte("password: " + hash(t, pw) + "\nscope:\n" + scope)
}

const readApp = "  - repositories: [library/app, \"team/*\"]\n    actions: [read]\n"

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func newClock() *fakeClock               { return &fakeClock{now: time.Now()} }

func TestParseClient(t *testing.T) {
	t.Parallel()
	good := hash(t, "pw")
	cases := []struct {
		name, token, value, wantErr string
	}{
		{name: "a bcrypt hash with read and metadata/read parses", token: "site-a",
			value: "password: " + good + "\nscope:\n- repositories: [\"*\"]\n  actions: [read, metadata/read]\n"},
		{name: "ACR's content/read is read", token: "site-a",
			value: "password: " + good + "\nscope:\n- repositories: [a]\n  actions: [content/read]\n"},
		{name: "a password in clear should fail without repeating it", token: "site-a",
			value: "password: hunter2\nscope:\n- repositories: [a]\n  actions: [read]\n", wantErr: `client token "site-a": ` + ErrNotBcrypt.Error()},
		{name: "a write action should fail: the registry is read-only", token: "t",
			value: "password: " + good + "\nscope:\n- repositories: [a]\n  actions: [content/write]\n", wantErr: `action "content/write" is not`},
		{name: "a bad pattern should fail", token: "t",
			value: "password: " + good + "\nscope:\n- repositories: [\"a[\"]\n  actions: [read]\n", wantErr: "syntax error in pattern"},
		{name: "an empty scope should fail", token: "t", value: "password: " + good + "\n", wantErr: "scope is empty"},
		{name: "a scope entry without repositories should fail", token: "t",
			value: "password: " + good + "\nscope:\n- actions: [read]\n", wantErr: "scope[0] has no repositories"},
		{name: "a misspelt field should fail", token: "t",
			value: "password: " + good + "\nscopes: []\n", wantErr: `unknown field "scopes"`},
		{name: "a name with a slash should fail", token: "a/b", value: "password: " + good, wantErr: "a name is 1 to 50"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseClient(tc.token, []byte(tc.value))
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestParseClientsLeavesOutOnlyTheBadToken(t *testing.T) {
	t.Parallel()
	data := map[string][]byte{
		"good": entryYAML(t, "pw", readApp),
		"bad":  []byte("password: clear\nscope:\n" + readApp),
	}
	cs, err := ParseClients(data)
	require.ErrorContains(t, err, `client token "bad"`)
	assert.Contains(t, cs, "good")
	assert.NotContains(t, cs, "bad")

	many := map[string][]byte{}
	for i := range MaxClients + 2 {
		many["t"+string(rune('a'+i))] = entryYAML(t, "pw", readApp)
	}
	cs, err = ParseClients(many)
	require.ErrorContains(t, err, "at most 20 client tokens")
	assert.Len(t, cs, MaxClients)
}

func TestGrant(t *testing.T) {
	t.Parallel()
	h := hash(t, "pw")
	reader, err := ParseClient("reader", []byte("password: "+h+"\nscope:\n"+readApp))
	require.NoError(t, err)
	lister, err := ParseClient("lister", []byte("password: "+h+"\nscope:\n- repositories: [\"*\"]\n  actions: [metadata/read]\n"))
	require.NoError(t, err)
	cases := []struct {
		name   string
		c      Client
		scopes []string
		want   []Access
	}{
		{"an exact repository is granted pull", reader, []string{"repository:library/app:pull"},
			[]Access{{"repository", "library/app", []string{"pull"}}}},
		{"a glob grants one segment", reader, []string{"repository:team/x:pull"},
			[]Access{{"repository", "team/x", []string{"pull"}}}},
		{"a glob does not cross a slash", reader, []string{"repository:team/x/y:pull"}, []Access{}},
		{"another repository is dropped", reader, []string{"repository:library/other:pull"}, []Access{}},
		{"push is never granted, pull is kept", reader, []string{"repository:library/app:pull,push,delete"},
			[]Access{{"repository", "library/app", []string{"pull"}}}},
		{"push alone is dropped", reader, []string{"repository:library/app:push"}, []Access{}},
		{"the catalog needs metadata/read", reader, []string{"registry:catalog:*"}, []Access{}},
		{"metadata/read grants the catalog", lister, []string{"registry:catalog:*"},
			[]Access{{"registry", "catalog", []string{"*"}}}},
		{"metadata/read alone does not pull", lister, []string{"repository:app:pull"}, []Access{}},
		{"a repeated scope is granted once", reader, []string{"repository:library/app:pull", "repository:library/app:pull"},
			[]Access{{"repository", "library/app", []string{"pull"}}}},
		{"a malformed scope is dropped", reader, []string{"repository:library/app", "pull"}, []Access{}},
		{"a class in the type is dropped", reader, []string{"repository(plugin):library/app:pull"}, []Access{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, Grant(tc.c, tc.scopes))
		})
	}
}

// testIssuer returns an issuer with tokens "reader" (password "pw-reader", library/app and team/*) and
// "disabled", its clock and its log.
func testIssuer(t *testing.T) (*Issuer, *fakeClock, *syncbuf.Buffer) {
	t.Helper()
	keys, err := NewKeys()
	require.NoError(t, err)
	clk := newClock()
	buf := &syncbuf.Buffer{}
	is := &Issuer{Service: service, Name: "cr-token-server", Lifetime: 5 * time.Minute, Keys: keys,
		FailEvery: 10 * time.Second, FailBurst: 3, Clock: clk, Log: slog.New(slog.NewTextHandler(buf, nil))}
	cs, err := ParseClients(map[string][]byte{
		"reader":   entryYAML(t, "pw-reader", readApp),
		"disabled": []byte("password: " + hash(t, "pw-disabled") + "\ndisabled: true\nscope:\n" + readApp),
	})
	require.NoError(t, err)
	is.SetClients(cs)
	return is, clk, buf
}

func get(t *testing.T, h http.Handler, user, pw, remote string, scopes ...string) *httptest.ResponseRecorder {
	t.Helper()
	q := url.Values{"service": {service}, "scope": scopes}
	r := httptest.NewRequest(http.MethodGet, TokenPath+"?"+q.Encode(), nil)
	if user != "" || pw != "" {
		r.SetBasicAuth(user, pw)
	}
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// decode checks a token's signature against the issuer's keys and returns its claims.
func decode(t *testing.T, keys *Keys, token string) claims {
	t.Helper()
	payload, err := keys.verifyES256(token)
	require.NoError(t, err)
	var c claims
	require.NoError(t, json.Unmarshal(payload, &c))
	return c
}

func TestIssuerAnswers(t *testing.T) {
	t.Parallel()
	is, clk, _ := testIssuer(t)
	now := clk.Now()

	w := get(t, is, "reader", "pw-reader", "", "repository:library/app:pull", "repository:other:pull")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	var resp struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &resp))
	assert.Equal(t, 300, resp.ExpiresIn)
	assert.Equal(t, resp.Token, resp.AccessToken)
	c := decode(t, is.Keys, resp.Token)
	assert.Equal(t, "reader", c.Subject)
	assert.Equal(t, service, c.Audience)
	assert.Equal(t, "cr-token-server", c.Issuer)
	assert.Equal(t, []Access{{"repository", "library/app", []string{"pull"}}}, c.Access)
	assert.Equal(t, now.Add(5*time.Minute-Leeway).Unix(), c.Expiration, "exp is Leeway before the end of the lifetime")
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))

	for _, tc := range []struct {
		name, user, pw string
		want           int
	}{
		{"a wrong password should get 401", "reader", "wrong", http.StatusUnauthorized},
		{"an unknown name should get 401", "nobody", "pw-reader", http.StatusUnauthorized},
		{"a disabled token with its right password should get 401", "disabled", "pw-disabled", http.StatusUnauthorized},
		{"no credentials should get 401", "", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := get(t, is, tc.user, tc.pw, "198.51.100.1:1", "repository:library/app:pull")
			assert.Equal(t, tc.want, w.Code)
			assert.Contains(t, w.Header().Get("WWW-Authenticate"), "Basic")
			assert.NotContains(t, w.Body.String(), "token\"")
		})
	}

	t.Run("a wrong service should get 400", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, TokenPath+"?service=other", nil)
		r.SetBasicAuth("reader", "pw-reader")
		w := httptest.NewRecorder()
		is.ServeHTTP(w, r)
		assert.Equal(t, http.StatusBadRequest, w.Code)
	})
	t.Run("the OAuth2 password grant by POST, as containerd asks first, is answered", func(t *testing.T) {
		form := url.Values{"grant_type": {"password"}, "username": {"reader"}, "password": {"pw-reader"},
			"service": {service}, "scope": {"repository:team/x:pull"}, "client_id": {"containerd-client"}}
		r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		is.ServeHTTP(w, r)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		var resp struct {
			AccessToken string `json:"access_token"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &resp))
		assert.Equal(t, []Access{{"repository", "team/x", []string{"pull"}}}, decode(t, is.Keys, resp.AccessToken).Access)
	})
	t.Run("a refresh-token grant should get 400", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader("grant_type=refresh_token&refresh_token=x"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		is.ServeHTTP(w, r)
		assert.Equal(t, http.StatusBadRequest, w.Code)
	})
	t.Run("another method should get 405", func(t *testing.T) {
		w := httptest.NewRecorder()
		is.ServeHTTP(w, httptest.NewRequest(http.MethodPut, TokenPath, nil))
		assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
	})
}

func TestIssuerRefusesShortLifetimes(t *testing.T) {
	t.Parallel()
	is, clk, _ := testIssuer(t)
	is.Lifetime = Leeway
	_, err := is.Issue("reader", nil, clk.Now())
	require.ErrorContains(t, err, "shorter than")
}

func TestRateLimitOfFailedAttempts(t *testing.T) {
	t.Parallel()
	is, clk, _ := testIssuer(t)
	const attacker = "198.51.100.7:40000"
	for i := range 3 {
		assert.Equal(t, http.StatusUnauthorized, get(t, is, "reader", "guess", attacker).Code, "attempt %d", i)
	}
	w := get(t, is, "reader", "pw-reader", attacker)
	assert.Equal(t, http.StatusTooManyRequests, w.Code, "once the bucket is empty even the right password waits")
	assert.NotEmpty(t, w.Header().Get("Retry-After"))

	// The name's bucket is empty too: another address trying the same name waits as well.
	assert.Equal(t, http.StatusTooManyRequests, get(t, is, "reader", "pw-reader", "203.0.113.9:1").Code)
	// Another name from another address is not held back.
	assert.Equal(t, http.StatusUnauthorized, get(t, is, "other", "x", "203.0.113.9:1").Code)

	clk.Add(10 * time.Second)
	assert.Equal(t, http.StatusOK, get(t, is, "reader", "pw-reader", attacker).Code, "one attempt comes back every FailEvery")

	// Successes spend nothing.
	clk.Add(time.Hour)
	for range 10 {
		require.Equal(t, http.StatusOK, get(t, is, "reader", "pw-reader", attacker).Code)
	}
}

func TestLogsNameAndAddressNeverThePassword(t *testing.T) {
	t.Parallel()
	is, _, logs := testIssuer(t)
	const secret = "Sup3r-S3cret-Guess"
	get(t, is, "reader", secret, "192.0.2.44:5555")
	get(t, is, "nobody", secret, "192.0.2.44:5555")
	get(t, is, "disabled", "pw-disabled", "192.0.2.44:5555")
	for range 5 {
		get(t, is, "reader", secret, "192.0.2.44:5555")
	}
	get(t, is, "reader", "pw-reader", "192.0.2.45:1")
	out := logs.String()
	t.Log(out)
	for _, pw := range []string{secret, "pw-disabled", "pw-reader", base64.StdEncoding.EncodeToString([]byte("reader:" + secret))} {
		assert.NotContains(t, out, pw)
	}
	for _, want := range []string{"user=reader", "user=nobody", "ip=192.0.2.44", "reason=\"wrong password\"",
		"reason=\"unknown token name\"", "reason=\"token disabled\"", "too many failed attempts"} {
		assert.Contains(t, out, want)
	}
}

func TestUnknownNameCostsABcrypt(t *testing.T) {
	t.Parallel()
	is, _, _ := testIssuer(t)
	// Tokens hashed at cost 12 make an unknown name's comparison cost 12 as well.
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), 12)
	require.NoError(t, err)
	c, err := ParseClient("slow", []byte("password: "+string(h)+"\nscope:\n"+readApp))
	require.NoError(t, err)
	is.SetClients(Clients{"slow": c})
	time1 := func(user string) time.Duration {
		start := time.Now()
		_, reason := is.authenticate(user, "wrong")
		require.NotEmpty(t, reason)
		return time.Since(start)
	}
	known, unknown := time1("slow"), time1("nobody")
	t.Logf("wrong password of a known name %s, unknown name %s", known, unknown)
	assert.Greater(t, unknown, known/4, "an unknown name must cost about one bcrypt comparison")
}

func TestKeyRotationKeepsIssuedTokensValid(t *testing.T) {
	t.Parallel()
	is, clk, _ := testIssuer(t)
	first, next := is.Keys.CurrentKID(), is.Keys.NextKID()
	jwks := func() []string {
		b, err := is.Keys.JWKS(clk.Now())
		require.NoError(t, err)
		var set struct{ Keys []struct{ Kid string } }
		require.NoError(t, json.Unmarshal(b, &set))
		var out []string
		for _, k := range set.Keys {
			out = append(out, k.Kid)
		}
		return out
	}
	assert.Equal(t, []string{first, next}, jwks(), "the JWKS publishes the current and next keys")

	old, err := is.Issue("reader", nil, clk.Now())
	require.NoError(t, err)
	probe, err := is.ProbeToken(clk.Now())
	require.NoError(t, err)
	assert.Equal(t, is.Keys.NextKID(), kidOf(t, probe), "the probe is signed by the next key")

	require.NoError(t, is.Keys.Rotate(clk.Now().Add(is.Lifetime)))
	assert.Equal(t, next, is.Keys.CurrentKID())
	third := is.Keys.NextKID()
	assert.Equal(t, []string{next, third, first}, jwks(), "the old key stays published while its tokens live")
	decode(t, is.Keys, old)
	fresh, err := is.Issue("reader", nil, clk.Now())
	require.NoError(t, err)
	assert.Equal(t, next, kidOf(t, fresh))

	clk.Add(is.Lifetime + time.Second)
	assert.Equal(t, []string{next, third}, jwks(), "once its tokens expired the old key leaves")

	// The keys survive a restart of the issuer (they are kept in the pod's memory volume).
	b, err := is.Keys.MarshalPrivate()
	require.NoError(t, err)
	again, err := UnmarshalKeys(b)
	require.NoError(t, err)
	assert.Equal(t, next, again.CurrentKID())
	assert.Equal(t, third, again.NextKID())
	_, err = again.verifyES256(fresh)
	require.NoError(t, err)
	_, err = UnmarshalKeys([]byte(`{"current":"x","next":"y"}`))
	require.ErrorContains(t, err, "no PEM block")
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	require.NoError(t, err)
	var hdr struct{ Kid string }
	require.NoError(t, json.Unmarshal(h, &hdr))
	return hdr.Kid
}

func TestWatchRotatesAndRevokesWithoutRestart(t *testing.T) {
	t.Parallel()
	is, _, logs := testIssuer(t)
	is.FailBurst = 1 << 20 // the polls below fail on purpose
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "cr", Name: "cr-client-tokens"},
		Data: map[string][]byte{"reader": entryYAML(t, "pw-1", readApp)}}
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "cr", Name: "unrelated"},
		Data: map[string][]byte{"intruder": entryYAML(t, "pw-x", readApp)}}
	cs := fake.NewClientset(secret, other)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, Watch(ctx, cs, "cr", "cr-client-tokens", is, is.Log))

	status := func(user, pw string) func() bool {
		return func() bool {
			return get(t, is, user, pw, "192.0.2.1:1", "repository:library/app:pull").Code == http.StatusOK
		}
	}
	require.True(t, status("reader", "pw-1")())
	require.False(t, status("intruder", "pw-x")(), "another Secret's tokens are not read")

	// Rotation: the new password works and the old one stops, within seconds.
	secret.Data["reader"] = entryYAML(t, "pw-2", readApp)
	_, err := cs.CoreV1().Secrets("cr").Update(ctx, secret, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, status("reader", "pw-2"), 5*time.Second, 20*time.Millisecond)
	require.False(t, status("reader", "pw-1")())

	// Revocation: the token's key removed.
	secret.Data = map[string][]byte{"someone": entryYAML(t, "pw-3", readApp)}
	_, err = cs.CoreV1().Secrets("cr").Update(ctx, secret, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !status("reader", "pw-2")() }, 5*time.Second, 20*time.Millisecond)
	require.True(t, status("someone", "pw-3")())

	// A deleted Secret refuses everything.
	require.NoError(t, cs.CoreV1().Secrets("cr").Delete(ctx, "cr-client-tokens", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return !status("someone", "pw-3")() }, 5*time.Second, 20*time.Millisecond)
	assert.Contains(t, logs.String(), "the tokens Secret was deleted")
}
