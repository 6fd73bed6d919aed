package certs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type fakeClock struct{ t time.Time }

func (c fakeClock) Now() time.Time { return c.t }

var (
	ip       = netip.MustParseAddr("10.96.0.50")
	dnsNames = []string{"cr-connected-registry", "cr-connected-registry.connected-registry", "cr-connected-registry.connected-registry.svc", "cr-connected-registry.connected-registry.svc.cluster.local"}
)

func request(spec certs.KeySpec) certs.Request {
	return certs.Request{IPs: []netip.Addr{ip}, DNSNames: dnsNames, Key: spec, Duration: certs.DefaultLeafDuration}
}

func newCA(t *testing.T) *certs.Pair {
	t.Helper()
	ca, err := certs.NewCA(rand.Reader, certs.Request{CommonName: "connected-registry CA", Key: certs.DefaultKeySpec, Duration: certs.DefaultCADuration}, now)
	require.NoError(t, err)
	return ca
}

func TestParseKeySpec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		algorithm string
		size      int
		want      certs.KeySpec
		wantErr   string
	}{
		{name: "ECDSA 256 should be P-256", algorithm: "ECDSA", size: 256, want: certs.KeySpec{Algorithm: "ECDSA", Size: 256}},
		{name: "the algorithm should be case-insensitive", algorithm: "ecdsa", size: 384, want: certs.KeySpec{Algorithm: "ECDSA", Size: 384}},
		{name: "RSA without a size should be 2048", algorithm: "RSA", want: certs.KeySpec{Algorithm: "RSA", Size: 2048}},
		{name: "RSA 3072 should be accepted", algorithm: "RSA", size: 3072, want: certs.KeySpec{Algorithm: "RSA", Size: 3072}},
		{name: "RSA 4096 should be accepted", algorithm: "rsa", size: 4096, want: certs.KeySpec{Algorithm: "RSA", Size: 4096}},
		{name: "RSA 1024 should be refused", algorithm: "RSA", size: 1024, wantErr: "unsupported key algorithm or size: RSA keys are 2048, 3072 or 4096 bits, not 1024"},
		{name: "ECDSA 2048, the RSA default given with the wrong algorithm, should be refused", algorithm: "ECDSA", size: 2048, wantErr: "unsupported key algorithm or size: ECDSA keys are 256 (P-256) or 384 (P-384) bits, not 2048"},
		{name: "Ed25519 should be refused", algorithm: "Ed25519", wantErr: `unsupported key algorithm or size: the key algorithm is ECDSA or RSA, not "Ed25519"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := certs.ParseKeySpec(tc.algorithm, tc.size)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				require.ErrorIs(t, err, certs.ErrKeySpec)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestIssuedMaterialPassesTheValidator proves what certgen makes with the validator users' own material meets:
// no check fails or warns, for every key spec offered.
func TestIssuedMaterialPassesTheValidator(t *testing.T) {
	t.Parallel()
	for _, spec := range []certs.KeySpec{{"ECDSA", 256}, {"ECDSA", 384}, {"RSA", 2048}, {"RSA", 3072}, {"RSA", 4096}} {
		t.Run(spec.String(), func(t *testing.T) {
			t.Parallel()
			ca := newCA(t)
			leaf, err := certs.Issue(rand.Reader, ca, request(spec), now)
			require.NoError(t, err)
			got, ok := certs.SpecOf(leaf.Cert.PublicKey)
			require.True(t, ok)
			require.Equal(t, spec, got)
			require.Equal(t, now.Add(-certs.Backdate), leaf.Cert.NotBefore)
			require.Equal(t, now.Add(certs.DefaultLeafDuration), leaf.Cert.NotAfter)
			require.Equal(t, now.Add(certs.DefaultCADuration), ca.Cert.NotAfter)
			require.Equal(t, "cr-connected-registry", leaf.Cert.Subject.CommonName)
			require.Equal(t, "IP:10.96.0.50, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local", certs.SANs(leaf.Cert))
			require.True(t, ca.Cert.MaxPathLenZero)

			r := tlscheck.CheckValues(b64(leaf.CertPEM), b64(leaf.KeyPEM), b64(ca.CertPEM),
				tlscheck.Options{ClusterIP: ip, DNSNames: dnsNames, Clock: fakeClock{now}})
			require.Empty(t, r.Problems(), "report: %v", r.Results)
			sec := tlscheck.Secret{Namespace: "connected-registry", Name: "cr-connected-registry-tls", Found: true, Type: "kubernetes.io/tls",
				Data: map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.CertPEM}}
			r = tlscheck.CheckSecret(sec, tlscheck.Options{ClusterIP: ip, DNSNames: dnsNames, Clock: fakeClock{now}})
			require.Empty(t, r.Problems(), "report: %v", r.Results)

			roots := x509.NewCertPool()
			roots.AddCert(ca.Cert)
			for _, name := range append([]string{ip.String()}, dnsNames...) {
				_, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, CurrentTime: now})
				require.NoError(t, err, name)
			}
		})
	}
}

func TestIssueNeverOutlivesTheCA(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA(rand.Reader, certs.Request{CommonName: "short CA", Key: certs.DefaultKeySpec, Duration: 30 * 24 * time.Hour}, now)
	require.NoError(t, err)
	leaf, err := certs.Issue(rand.Reader, ca, request(certs.DefaultKeySpec), now)
	require.NoError(t, err)
	require.Equal(t, ca.Cert.NotAfter, leaf.Cert.NotAfter)
}

func TestParsePair(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	got, err := certs.ParsePair(ca.CertPEM, ca.KeyPEM)
	require.NoError(t, err)
	require.Equal(t, ca.Cert.Raw, got.Cert.Raw)
	other := newCA(t)
	_, err = certs.ParsePair(ca.CertPEM, other.KeyPEM)
	require.EqualError(t, err, "the private key does not belong to the certificate")
	_, err = certs.ParsePair([]byte("junk"), ca.KeyPEM)
	require.EqualError(t, err, "no PEM certificate")
}

func TestParseChain(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	leaf, err := certs.Issue(rand.Reader, ca, request(certs.DefaultKeySpec), now)
	require.NoError(t, err)
	// A leaf, a key block and a broken certificate to skip, then the CA: the certificates, in order.
	data := append(append([]byte{}, leaf.CertPEM...), leaf.KeyPEM...)
	data = append(data, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")...)
	data = append(data, ca.CertPEM...)
	got := certs.ParseChain(data)
	require.Len(t, got, 2)
	require.Equal(t, leaf.Cert.Raw, got[0].Raw)
	require.Equal(t, ca.Cert.Raw, got[1].Raw)
	require.Empty(t, certs.ParseChain([]byte("junk")))
}

func TestCAProblem(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{name: "a fresh CA should be kept", at: now},
		{name: "a CA nine years old should be kept", at: now.AddDate(9, 0, 0)},
		{name: "a CA that expires before a new serving certificate would should be replaced", at: ca.Cert.NotAfter.Add(-30 * 24 * time.Hour), want: "it expires on 2036-11-24T12:00:00Z, before a serving certificate issued now would"},
		{name: "an expired CA should be replaced", at: ca.Cert.NotAfter.Add(time.Second), want: "it expired on 2036-11-24T12:00:00Z"},
		{name: "a CA from the future should be replaced", at: now.Add(-time.Hour), want: "it is not valid before 2026-11-27T11:55:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, certs.CAProblem(ca, tc.at, certs.DefaultLeafDuration))
		})
	}
}

func TestLeafProblem(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	leaf, err := certs.Issue(rand.Reader, ca, request(certs.DefaultKeySpec), now)
	require.NoError(t, err)
	renew := certs.RenewalTime(leaf.Cert)
	require.Equal(t, time.Date(2027, 1, 26, 11, 58, 20, 0, time.UTC), renew, "two thirds of the 90 days and 5 minutes from NotBefore")
	other := newCA(t)
	otherIP := request(certs.DefaultKeySpec)
	otherIP.IPs = []netip.Addr{netip.MustParseAddr("10.96.0.51")}
	rsa := request(certs.KeySpec{Algorithm: "RSA", Size: 2048})
	tests := []struct {
		name string
		ca   *certs.Pair
		req  certs.Request
		at   time.Time
		want string
	}{
		{name: "a fresh serving certificate should be kept", ca: ca, req: request(certs.DefaultKeySpec), at: now},
		{name: "the same names in another order and case should keep it", ca: ca, req: certs.Request{IPs: []netip.Addr{ip}, DNSNames: []string{dnsNames[3], dnsNames[2], "CR-connected-registry", dnsNames[1]}, Key: certs.DefaultKeySpec}, at: now},
		{name: "a second before renewal it should be kept", ca: ca, req: request(certs.DefaultKeySpec), at: renew.Add(-time.Second)},
		{name: "at two thirds of its lifetime it should be renewed", ca: ca, req: request(certs.DefaultKeySpec), at: renew, want: "it is due for renewal since 2027-01-26T11:58:20Z (two thirds of its lifetime)"},
		{name: "expired it should be renewed", ca: ca, req: request(certs.DefaultKeySpec), at: leaf.Cert.NotAfter.Add(time.Second), want: "it expired on 2027-02-25T12:00:00Z"},
		{name: "another ClusterIP should reissue it", ca: ca, req: otherIP, at: now, want: "its names (IP:10.96.0.50, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local) are not the requested ones (IP:10.96.0.51, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local)"},
		{name: "another key algorithm should reissue it", ca: ca, req: rsa, at: now, want: "its key is not RSA 2048"},
		{name: "another CA should reissue it", ca: other, req: request(certs.DefaultKeySpec), at: now, want: "it was not issued by the current CA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, certs.LeafProblem(leaf, tc.ca, tc.req, tc.at))
		})
	}
}

func TestSpecOfUnknownKey(t *testing.T) {
	t.Parallel()
	k, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)
	spec, ok := certs.SpecOf(k.Public())
	require.True(t, ok)
	require.Equal(t, certs.KeySpec{Algorithm: "ECDSA", Size: 521}, spec)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
