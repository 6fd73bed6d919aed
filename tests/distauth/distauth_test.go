package distauth

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	_ "github.com/distribution/distribution/v3/registry/auth/token" // registers the "token" access controller
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/connected-registry/connected-registry/internal/clientauth"
)

const (
	service = "10.96.0.50:443"
	issuer  = "connected-registry-token-server"
)

func newIssuer(t *testing.T) *clientauth.Issuer {
	t.Helper()
	keys, err := clientauth.NewKeys()
	require.NoError(t, err)
	is := &clientauth.Issuer{Service: service, Name: issuer, Lifetime: 5 * time.Minute, Keys: keys, Log: slog.New(slog.DiscardHandler)}
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	c, err := clientauth.ParseClient("reader", []byte("password: "+string(h)+"\nscope:\n- repositories: [\"library/*\"]\n  actions: [read]\n"))
	require.NoError(t, err)
	is.SetClients(clientauth.Clients{"reader": c})
	return is
}

// controller is Distribution's token access controller configured as the chart configures it, reading the
// issuer's JWKS as it is now.
func controller(t *testing.T, is *clientauth.Issuer) auth.AccessController {
	t.Helper()
	jwks, err := is.Keys.JWKS(time.Now())
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "jwks.json")
	require.NoError(t, os.WriteFile(path, jwks, 0o600))
	ac, err := auth.GetAccessController("token", map[string]any{
		"realm": "https://" + service + clientauth.TokenPath, "service": service, "issuer": issuer,
		"jwks": path, "signingalgorithms": []any{"ES256"},
	})
	require.NoError(t, err)
	return ac
}

func pull(repo string) auth.Access {
	return auth.Access{Resource: auth.Resource{Type: "repository", Name: repo}, Action: "pull"}
}

var catalog = auth.Access{Resource: auth.Resource{Type: "registry", Name: "catalog"}, Action: "*"}

func authorize(ac auth.AccessController, token string, access ...auth.Access) error {
	r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	_, err := ac.Authorized(r, access...)
	return err
}

func TestDistributionAcceptsIssuedTokens(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	ac := controller(t, is)
	now := time.Now()
	access := clientauth.Grant(mustClient(t, is), []string{"repository:library/app:pull", "repository:secret/app:pull", "registry:catalog:*"})
	token, err := is.Issue("reader", access, now)
	require.NoError(t, err)

	require.NoError(t, authorize(ac, token, pull("library/app")), "the granted repository")
	require.NoError(t, authorize(ac, token), "GET /v2/ with a valid token")
	assertChallenge(t, authorize(ac, token, pull("secret/app")), "insufficient_scope")
	assertChallenge(t, authorize(ac, token, catalog), "insufficient_scope")
	assertChallenge(t, authorize(ac, ""), "")

	other := newIssuer(t)
	foreign, err := other.Issue("reader", access, now)
	require.NoError(t, err)
	assertChallenge(t, authorize(ac, foreign, pull("library/app")), "invalid_token")
}

func mustClient(t *testing.T, is *clientauth.Issuer) clientauth.Client {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	c, err := clientauth.ParseClient("reader", []byte("password: "+string(h)+"\nscope:\n- repositories: [\"library/*\"]\n  actions: [read]\n"))
	require.NoError(t, err)
	return c
}

// TestDistributionRefusesExpiredTokensAtTheEndOfTheLifetime: the issuer sets exp Leeway early, so
// Distribution (which adds Leeway) refuses a token exactly Lifetime after its issue.
func TestDistributionRefusesExpiredTokensAtTheEndOfTheLifetime(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	ac := controller(t, is)
	a := []clientauth.Access{{Type: "repository", Name: "library/app", Actions: []string{"pull"}}}
	live, err := is.Issue("reader", a, time.Now().Add(-is.Lifetime+5*time.Second))
	require.NoError(t, err)
	require.NoError(t, authorize(ac, live, pull("library/app")), "5 s before the end of its lifetime")
	dead, err := is.Issue("reader", a, time.Now().Add(-is.Lifetime-2*time.Second))
	require.NoError(t, err)
	assertChallenge(t, authorize(ac, dead, pull("library/app")), "invalid_token")
	assert.Equal(t, clientauth.Leeway, 60*time.Second, "Distribution v3.1.2's token.Leeway")
}

// TestDistributionKeepsVerifyingAcrossARotation: a registry that loaded the JWKS before a rotation verifies
// the tokens signed after it (the next key was published), and the probe token tells the issuer so.
func TestDistributionKeepsVerifyingAcrossARotation(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	ac := controller(t, is)
	a := []clientauth.Access{{Type: "repository", Name: "library/app", Actions: []string{"pull"}}}
	before, err := is.Issue("reader", a, time.Now())
	require.NoError(t, err)
	probe, err := is.ProbeToken(time.Now())
	require.NoError(t, err)
	require.NoError(t, authorize(ac, probe), "the registry already trusts the next key")

	require.NoError(t, is.Keys.Rotate(time.Now().Add(is.Lifetime)))
	after, err := is.Issue("reader", a, time.Now())
	require.NoError(t, err)
	require.NoError(t, authorize(ac, before, pull("library/app")), "a token of the old key")
	require.NoError(t, authorize(ac, after, pull("library/app")), "a token of the new current key")

	// A second rotation before the registry re-read the JWKS would break it: the probe says so.
	probe, err = is.ProbeToken(time.Now())
	require.NoError(t, err)
	assertChallenge(t, authorize(ac, probe), "invalid_token")
	fresh := controller(t, is)
	require.NoError(t, authorize(fresh, probe), "after the registry re-reads the JWKS")
	require.NoError(t, authorize(fresh, before, pull("library/app")), "the retired key is still published")
}

// assertChallenge checks err is Distribution's 401 challenge, with the Bearer error code wanted ("" for none).
func assertChallenge(t *testing.T, err error, code string) {
	t.Helper()
	var ch auth.Challenge
	require.True(t, errors.As(err, &ch), "want a challenge, got %v", err)
	w := httptest.NewRecorder()
	ch.SetHeaders(httptest.NewRequest(http.MethodGet, "/v2/", nil), w)
	h := w.Header().Get("WWW-Authenticate")
	assert.Contains(t, h, `Bearer realm="https://`+service+clientauth.TokenPath+`"`)
	if code != "" {
		assert.Contains(t, h, `error="`+code+`"`)
	} else {
		assert.NotContains(t, h, "error=")
	}
}
