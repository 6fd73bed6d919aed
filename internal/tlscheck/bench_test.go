package tlscheck_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"testing"

	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

// BenchmarkCheckValues runs the whole chain on good material: a P-256 serving certificate and its CA.
func BenchmarkCheckValues(b *testing.B) {
	m := newMaterial(b)
	crt, key, ca := b64(certPEM(m.leaf)), b64(keyPEM(b, m.leaf.key)), b64(certPEM(m.root))
	opts := options()
	b.ReportAllocs()
	for b.Loop() {
		if r := tlscheck.CheckValues(crt, key, ca, opts); r.Status() != tlscheck.OK {
			b.Fatal(r.Summary())
		}
	}
}

// BenchmarkStdlibKeyPairAndVerify is the baseline: what a minimal validator does with the standard library,
// decoding the three values, tls.X509KeyPair and x509.Verify for the ClusterIP.
func BenchmarkStdlibKeyPairAndVerify(b *testing.B) {
	m := newMaterial(b)
	crt, key, ca := b64(certPEM(m.leaf)), b64(keyPEM(b, m.leaf.key)), b64(certPEM(m.root))
	b.ReportAllocs()
	for b.Loop() {
		crtPEM, _ := base64.StdEncoding.DecodeString(crt)
		keyPEM, _ := base64.StdEncoding.DecodeString(key)
		caPEM, _ := base64.StdEncoding.DecodeString(ca)
		pair, err := tls.X509KeyPair(crtPEM, keyPEM)
		if err != nil {
			b.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: clusterIP, CurrentTime: now}); err != nil {
			b.Fatal(err)
		}
	}
}
