package clientauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"
)

// signingKey is one ES256 key and its kid, the RFC 7638 thumbprint of its public JWK.
type signingKey struct {
	kid string
	key *ecdsa.PrivateKey
	// retire is when a key that signed its last token can leave the JWKS; zero while it still signs or is next.
	retire time.Time
}

func newSigningKey() (signingKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return signingKey{}, fmt.Errorf("generating a token signing key: %w", err)
	}
	return signingKey{kid: thumbprint(&k.PublicKey), key: k}, nil
}

// jwk is a public EC key as a JSON Web Key.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

func publicJWK(pub *ecdsa.PublicKey) jwk {
	b := make([]byte, 65)
	// Uncompressed point: 0x04 || X || Y, each 32 bytes for P-256.
	raw, _ := pub.Bytes() //nolint:errcheck // P-256 keys always encode
	copy(b, raw)
	enc := base64.RawURLEncoding.EncodeToString
	return jwk{Kty: "EC", Crv: "P-256", X: enc(b[1:33]), Y: enc(b[33:65])}
}

// thumbprint is the JWK thumbprint (RFC 7638) of a P-256 public key, base64url without padding.
func thumbprint(pub *ecdsa.PublicKey) string {
	j := publicJWK(pub)
	// RFC 7638: the required members in lexicographic order, no white space.
	canon := fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q,"y":%q}`, j.Crv, j.Kty, j.X, j.Y)
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Keys are the issuer's signing keys: the current key signs; the next key is published beside it so that
// Distribution, which reads its JWKS file only when it starts, already trusts it when a rotation makes it
// current; a retired key stays published until every token it signed has expired.
//
// Rotation is safe only once the registry has read a JWKS that holds the next key: the caller checks that
// (Probe) before calling Rotate.
type Keys struct {
	mu      sync.Mutex
	current signingKey
	next    signingKey
	retired []signingKey
}

// NewKeys generates a current and a next key.
func NewKeys() (*Keys, error) {
	cur, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	next, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	return &Keys{current: cur, next: next}, nil
}

// keyFile is how Keys are kept on disk (in the pod's in-memory volume), so a restarted issuer signs with the
// keys the running registry trusts.
type keyFile struct {
	Current string `json:"current"` // PKCS#8 PEM
	Next    string `json:"next"`
}

// MarshalPrivate encodes the current and next private keys (retired keys are not kept: their tokens expire).
func (k *Keys) MarshalPrivate() ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	enc := func(s signingKey) (string, error) {
		der, err := x509.MarshalPKCS8PrivateKey(s.key)
		if err != nil {
			return "", err
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
	}
	cur, err := enc(k.current)
	if err != nil {
		return nil, err
	}
	next, err := enc(k.next)
	if err != nil {
		return nil, err
	}
	return json.Marshal(keyFile{Current: cur, Next: next})
}

// UnmarshalKeys reads what MarshalPrivate wrote.
func UnmarshalKeys(b []byte) (*Keys, error) {
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("reading the signing keys: %w", err)
	}
	dec := func(which, s string) (signingKey, error) {
		blk, _ := pem.Decode([]byte(s))
		if blk == nil {
			return signingKey{}, fmt.Errorf("reading the %s signing key: no PEM block", which)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return signingKey{}, fmt.Errorf("reading the %s signing key: %w", which, err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return signingKey{}, fmt.Errorf("reading the %s signing key: not an ECDSA P-256 key", which)
		}
		return signingKey{kid: thumbprint(&ec.PublicKey), key: ec}, nil
	}
	cur, err := dec("current", f.Current)
	if err != nil {
		return nil, err
	}
	next, err := dec("next", f.Next)
	if err != nil {
		return nil, err
	}
	return &Keys{current: cur, next: next}, nil
}

// CurrentKID and NextKID name the keys.
func (k *Keys) CurrentKID() string { k.mu.Lock(); defer k.mu.Unlock(); return k.current.kid }

// NextKID is the kid of the key the next rotation makes current.
func (k *Keys) NextKID() string { k.mu.Lock(); defer k.mu.Unlock(); return k.next.kid }

// JWKS is the JSON Web Key Set Distribution reads (auth.token.jwks): the current, next and retired public keys
// at now; retired keys past their retire time are dropped.
func (k *Keys) JWKS(now time.Time) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	keep := k.retired[:0]
	for _, r := range k.retired {
		if now.Before(r.retire) {
			keep = append(keep, r)
		}
	}
	k.retired = keep
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	for _, s := range append([]signingKey{k.current, k.next}, k.retired...) {
		j := publicJWK(&s.key.PublicKey)
		j.Kid, j.Alg, j.Use = s.kid, "ES256", "sig"
		set.Keys = append(set.Keys, j)
	}
	return json.MarshalIndent(set, "", "  ")
}

// Rotate makes the next key current, keeps the old current key published until retire (the moment its last
// token expires), and generates a new next key. The caller must publish the new JWKS and make sure the
// registry reads it before the following rotation.
func (k *Keys) Rotate(retire time.Time) error {
	fresh, err := newSigningKey()
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.current
	old.retire = retire
	k.retired = append(k.retired, old)
	k.current, k.next = k.next, fresh
	return nil
}

// signWith signs the claims with the current key (next: with the next key, for Probe).
func (k *Keys) signWith(next bool, claims any) (string, error) {
	k.mu.Lock()
	s := k.current
	if next {
		s = k.next
	}
	k.mu.Unlock()
	return signES256(s, claims)
}

func signES256(s signingKey, claims any) (string, error) {
	header, err := json.Marshal(map[string]string{"typ": "JWT", "alg": "ES256", "kid": s.kid})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding.EncodeToString
	input := enc(header) + "." + enc(payload)
	digest := sha256.Sum256([]byte(input))
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
	if err != nil {
		return "", fmt.Errorf("signing a token: %w", err)
	}
	// JWS ES256: R and S, each left-padded to 32 bytes.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return input + "." + enc(sig), nil
}

// errBadSignature is verifyES256's error for a token no published key signed.
var errBadSignature = errors.New("token not signed by a published key")

// verifyES256 checks a token's signature against the published keys; tests and Probe's callers use it, the
// registry uses Distribution's own verification.
func (k *Keys) verifyES256(token string) ([]byte, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errBadSignature
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, errBadSignature
	}
	var h struct{ Kid, Alg string }
	if json.Unmarshal(hb, &h) != nil || h.Alg != "ES256" {
		return nil, errBadSignature
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return nil, errBadSignature
	}
	k.mu.Lock()
	var pub *ecdsa.PublicKey
	for _, s := range append([]signingKey{k.current, k.next}, k.retired...) {
		if s.kid == h.Kid {
			pub = &s.key.PublicKey
		}
	}
	k.mu.Unlock()
	if pub == nil {
		return nil, errBadSignature
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return nil, errBadSignature
	}
	return base64.RawURLEncoding.DecodeString(parts[1])
}
