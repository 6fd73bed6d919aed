package acrparent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"
)

// AnonymousSubject is the subject of tokens issued without credentials (Options.AnonymousPull).
const AnonymousSubject = "<anonymous>"

// DistributionLeeway is how long after a token's exp claim Distribution v3.1.2 still accepts it
// (registry/auth/token.Leeway, fixed, not configurable). The issuer sets exp this much before the moment it
// wants Distribution to start refusing the token.
const DistributionLeeway = 60 * time.Second

// Account is a token the parent issues access tokens for, as an ACR token (or its admin user) is.
type Account struct {
	// Name and Password are what the client sends by Basic auth to the token endpoint (SyncTokenName and
	// SyncTokenPassword of a connection string).
	Name, Password string
	// Repositories the account may read; nil means every repository (and the catalog).
	Repositories []string
	// Push allows push as well as pull (for seeding the parent); a sync token of a ReadOnly connected registry
	// has pull only.
	Push bool
}

// allows reports whether the account may read repo.
func (a Account) allows(repo string) bool {
	return a.Repositories == nil || slices.Contains(a.Repositories, repo)
}

// issuer signs access tokens with an ECDSA P-256 key whose self-signed certificate Distribution trusts
// (auth.token.rootcertbundle); every token carries that certificate in its x5c header.
type issuer struct {
	name     string // the iss claim, auth.token.issuer
	service  string // the aud claim, auth.token.service
	lifetime time.Duration
	key      *ecdsa.PrivateKey
	certDER  []byte
	certPEM  []byte
	accounts map[string]Account
	// anonymous is what a request without credentials gets (Options.AnonymousPull); nil refuses it.
	anonymous *Account
	log       *recorder
	now       func() time.Time
}

func newIssuer(name, service string, lifetime time.Duration, accounts []Account, log *recorder) (*issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name + " token signing key"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the token signing certificate: %w", err)
	}
	is := &issuer{name: name, service: service, lifetime: lifetime, key: key, certDER: der,
		certPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		accounts: map[string]Account{}, log: log, now: time.Now}
	for _, a := range accounts {
		if a.Name == "" || a.Password == "" {
			return nil, fmt.Errorf("account %q: a token needs a name and a password", a.Name)
		}
		if _, dup := is.accounts[a.Name]; dup {
			return nil, fmt.Errorf("account %q is given twice", a.Name)
		}
		is.accounts[a.Name] = a
	}
	return is, nil
}

// tokenResponse is what ACR's GET /oauth2/token answers (Docker's token specification).
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// ServeHTTP is the token endpoint.
func (is *issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rec := TokenRequest{Time: is.now(), Method: r.Method, Service: q.Get("service"), AccountParam: q.Get("account")}
	for _, s := range q["scope"] {
		rec.Scopes = append(rec.Scopes, strings.Fields(s)...)
	}
	fail := func(status int, code, msg string) {
		rec.Status, rec.Error = status, msg
		is.log.token(rec)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+is.service+`"`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
	}
	if r.Method != http.MethodGet {
		// ACR also takes POSTs (OAuth2 refresh tokens, AAD exchange); the stand-in does not.
		fail(http.StatusMethodNotAllowed, "UNSUPPORTED", "the test parent's token endpoint takes GET with Basic auth only")
		return
	}
	user, password, ok := r.BasicAuth()
	rec.Account = user
	var acct Account
	switch {
	case !ok && is.anonymous != nil:
		acct, rec.Account = *is.anonymous, AnonymousSubject
	case !ok:
		fail(http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	default:
		known := false
		acct, known = is.accounts[user]
		if !known || acct.Password != password {
			fail(http.StatusUnauthorized, "UNAUTHORIZED", "incorrect username or password")
			return
		}
	}
	if rec.Service != is.service {
		fail(http.StatusBadRequest, "DENIED", fmt.Sprintf("service %q is not this registry's (%q)", rec.Service, is.service))
		return
	}
	access := is.grant(acct, rec.Scopes)
	for _, a := range access {
		rec.Granted = append(rec.Granted, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
	}
	issued := is.now()
	token, err := is.sign(acct.Name, issued, access)
	if err != nil {
		fail(http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	rec.Status, rec.Expires = http.StatusOK, issued.Add(is.lifetime)
	is.log.token(rec)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(tokenResponse{Token: token, AccessToken: token,
		ExpiresIn: int(is.lifetime / time.Second), IssuedAt: issued.UTC().Format(time.RFC3339)})
}

// resourceActions is one entry of the access claim, as Distribution reads it.
type resourceActions struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// grant returns what the account gets of the scopes asked: for each repository it may read, pull, and push if
// it may push; the catalog for accounts that read every repository. Everything else is dropped silently, as
// Docker's token specification says (the registry then refuses the request).
func (is *issuer) grant(acct Account, scopes []string) []resourceActions {
	var out []resourceActions
	for _, scope := range scopes {
		typ, rest, ok := strings.Cut(scope, ":")
		i := strings.LastIndex(rest, ":")
		if !ok || i < 0 {
			continue
		}
		name, actions := rest[:i], strings.Split(rest[i+1:], ",")
		var granted []string
		switch typ {
		case "repository":
			if !acct.allows(name) {
				continue
			}
			for _, a := range actions {
				if (a == "pull" || a == "push" && acct.Push) && !slices.Contains(granted, a) {
					granted = append(granted, a)
				}
			}
		case "registry":
			if name == "catalog" && acct.Repositories == nil && slices.Contains(actions, "*") {
				granted = []string{"*"}
			}
		}
		if len(granted) > 0 {
			out = append(out, resourceActions{Type: typ, Name: name, Actions: granted})
		}
	}
	return out
}

// sign makes the JWT: ES256, the signing certificate in x5c, exp DistributionLeeway before the moment
// Distribution should start refusing it (issued + lifetime).
func (is *issuer) sign(subject string, issued time.Time, access []resourceActions) (string, error) {
	if access == nil {
		access = []resourceActions{}
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	header, err := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256",
		"x5c": []string{base64.StdEncoding.EncodeToString(is.certDER)}})
	if err != nil {
		return "", err
	}
	// Rounded up: Distribution compares whole seconds, and refusing a token early would be a defect of ours.
	exp := issued.Add(is.lifetime - DistributionLeeway)
	expUnix := exp.Unix()
	if exp.Nanosecond() != 0 {
		expUnix++
	}
	claims, err := json.Marshal(map[string]any{
		"iss": is.name, "sub": subject, "aud": is.service,
		"iat": issued.Unix(), "nbf": issued.Unix(),
		"exp":    expUnix,
		"jti":    hex.EncodeToString(jti),
		"access": access,
	})
	if err != nil {
		return "", err
	}
	signing := b64(header) + "." + b64(claims)
	digest := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, is.key, digest[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64) // JWS ES256: r and s, each 32 bytes big-endian (RFC 7518 §3.4)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + b64(sig), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Claims decodes a token's claims without verifying it (Distribution verifies): for tests that look at what
// was granted.
func Claims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("a JWT has 3 parts, this has %d", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("the claims are not base64url: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, fmt.Errorf("the claims are not JSON: %w", err)
	}
	return claims, nil
}
