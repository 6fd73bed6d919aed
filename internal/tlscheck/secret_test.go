package tlscheck_test

import (
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

// TestCheckSecret holds the cases of SPEC §7 that concern an existing Secret named by tls.secret: missing, of the
// wrong type, lacking a key, and material problems named by the Secret's key.
func TestCheckSecret(t *testing.T) {
	t.Parallel()
	m := newMaterial(t)
	data := func() map[string][]byte {
		return map[string][]byte{"tls.crt": certPEM(m.leaf), "tls.key": keyPEM(t, m.leaf.key), "ca.crt": certPEM(m.root)}
	}
	secret := func(f func(s *tlscheck.Secret)) tlscheck.Secret {
		s := tlscheck.Secret{Namespace: ns, Name: "k8secret", Found: true, Type: "kubernetes.io/tls", Data: data()}
		if f != nil {
			f(&s)
		}
		return s
	}
	expired := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.AddDate(0, 0, -100), now.AddDate(0, 0, -10)
	})
	tests := []struct {
		name       string
		in         tlscheck.Secret
		wantCheck  string
		wantStatus tlscheck.Status
		wantErr    error
		wantMsg    string
	}{
		{
			name: "a complete kubernetes.io/tls Secret should pass",
			in:   secret(nil),
		},
		{
			name:      "a missing Secret should fail with the command that creates it",
			in:        secret(func(s *tlscheck.Secret) { s.Found, s.Type, s.Data = false, "", nil }),
			wantCheck: "secret", wantErr: tlscheck.ErrSecretMissing,
			wantMsg: "Secret connected-registry/k8secret named by tls.secret does not exist: create it with " + secretCreateHint + ", or correct tls.secret",
		},
		{
			name:      "an Opaque Secret should fail",
			in:        secret(func(s *tlscheck.Secret) { s.Type = "Opaque" }),
			wantCheck: "secret", wantErr: tlscheck.ErrSecretType,
			wantMsg: `Secret connected-registry/k8secret is of type "Opaque", not kubernetes.io/tls: recreate it with ` + secretCreateHint,
		},
		{
			name:      "a Secret without ca.crt, as kubectl create secret tls makes it, should fail",
			in:        secret(func(s *tlscheck.Secret) { delete(s.Data, "ca.crt") }),
			wantCheck: "secret", wantErr: tlscheck.ErrSecretKeyMissing,
			wantMsg: "Secret connected-registry/k8secret lacks the key ca.crt (the CA nodes will trust): recreate it with " + secretCreateHint,
		},
		{
			name:      "a Secret with an empty tls.key should fail",
			in:        secret(func(s *tlscheck.Secret) { s.Data["tls.key"] = nil }),
			wantCheck: "secret", wantErr: tlscheck.ErrSecretKeyMissing,
			wantMsg: "Secret connected-registry/k8secret has an empty tls.key (its private key): recreate it with " + secretCreateHint,
		},
		{
			name:      "Secret data encoded twice should fail naming the key",
			in:        secret(func(s *tlscheck.Secret) { s.Data["tls.crt"] = []byte(b64(s.Data["tls.crt"])) }),
			wantCheck: "encoding", wantErr: tlscheck.ErrBase64Twice,
			wantMsg: "Secret connected-registry/k8secret key tls.crt holds base64 text, not PEM (the data was base64-encoded twice): recreate the Secret from the PEM files: " + secretCreateHint,
		},
		{
			name:      "Secret data that is not PEM should fail naming the key",
			in:        secret(func(s *tlscheck.Secret) { s.Data["ca.crt"] = []byte("not a certificate") }),
			wantCheck: "pem", wantErr: tlscheck.ErrNoPEM,
			wantMsg: `Secret connected-registry/k8secret key ca.crt is not PEM (no "-----BEGIN" line): recreate the Secret from the PEM files: ` + secretCreateHint,
		},
		{
			name: "an expired certificate in the Secret should fail with the fix for a Secret",
			in: secret(func(s *tlscheck.Secret) {
				s.Data["tls.crt"], s.Data["tls.key"] = certPEM(expired), keyPEM(t, expired.key)
			}),
			wantCheck: "validity", wantErr: tlscheck.ErrExpired,
			wantMsg: "Secret connected-registry/k8secret key tls.crt expired on 2026-11-17T12:00:00Z (10 days ago): renew it and put the new certificate and key in the Secret connected-registry/k8secret",
		},
		{
			name:      "a key in the Secret that does not match should fail naming the Secret's keys",
			in:        secret(func(s *tlscheck.Secret) { s.Data["tls.key"] = keyPEM(t, ecKey(t)) }),
			wantCheck: "key-pair", wantErr: tlscheck.ErrKeyMismatch,
			wantMsg: "Secret connected-registry/k8secret key tls.key does not match the certificate in Secret connected-registry/k8secret key tls.crt (CN=registry): give the private key the certificate was issued for, or a certificate issued for this key",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tlscheck.CheckSecret(tc.in, options())
			assertReport(t, r, tc.wantCheck, tc.wantStatus, tc.wantErr, tc.wantMsg)
			if tc.wantMsg == "" {
				require.Len(t, r.Results, len(tlscheck.CheckNames())+1)
				require.Equal(t, "secret", r.Results[0].Check)
			}
		})
	}
}
