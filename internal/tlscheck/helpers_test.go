package tlscheck_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

// now is the fake clock's time in every test.
var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type fakeClock struct{ t time.Time }

func (c fakeClock) Now() time.Time { return c.t }

const (
	clusterIP = "10.96.0.50"
	svc       = "cr-connected-registry"
	ns        = "connected-registry"
)

var dnsNames = []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}

func options() tlscheck.Options {
	return tlscheck.Options{ClusterIP: netip.MustParseAddr(clusterIP), DNSNames: dnsNames, Clock: fakeClock{now}}
}

// cert is a certificate with its key.
type cert struct {
	*x509.Certificate
	key crypto.Signer
}

var serial atomic.Int64

func ecKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var rsaKeys sync.Map // bits -> *rsa.PrivateKey, shared: RSA generation is slow

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	if k, ok := rsaKeys.Load(bits); ok {
		return k.(*rsa.PrivateKey)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	actual, _ := rsaKeys.LoadOrStore(bits, k)
	return actual.(*rsa.PrivateKey)
}

// caTemplate is a CA valid from a year ago for ten years.
func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.AddDate(-1, 0, 0),
		NotAfter:              now.AddDate(9, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// leafTemplate is a serving certificate for the registry, issued a day ago for 90 days.
func leafTemplate() *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: "registry"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(-24 * time.Hour).Add(90 * 24 * time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP(clusterIP)},
		DNSNames:              dnsNames,
	}
}

// issue signs tmpl for key with parent, or self-signs it when parent is nil. tweak may change the template first.
func issue(t testing.TB, tmpl *x509.Certificate, key crypto.Signer, parent *cert, tweak ...func(*x509.Certificate)) *cert {
	t.Helper()
	if key == nil {
		key = ecKey(t)
	}
	for _, f := range tweak {
		f(tmpl)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.Certificate
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &cert{Certificate: c, key: key}
}

func certPEM(certs ...*cert) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func derPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// resign replaces the OID old with replacement (of the same length) throughout the certificate and signs the
// result again with issuer using hash: how the tests make certificates Go refuses to create (MD5) or cannot
// (secp256k1 keys).
func resign(t testing.TB, der []byte, old, replacement asn1.ObjectIdentifier, issuer crypto.Signer, hash crypto.Hash) []byte {
	t.Helper()
	o, _ := asn1.Marshal(old)
	r, _ := asn1.Marshal(replacement)
	if len(o) != len(r) || !bytes.Contains(der, o) {
		t.Fatalf("cannot replace %v with %v", old, replacement)
	}
	der = bytes.ReplaceAll(der, o, r)
	var c struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		t.Fatal(err)
	}
	var digest []byte
	switch hash {
	case crypto.SHA256:
		d := sha256.Sum256(c.TBS.FullBytes)
		digest = d[:]
	default:
		h := hash.New()
		h.Write(c.TBS.FullBytes)
		digest = h.Sum(nil)
	}
	sig, err := issuer.Sign(rand.Reader, digest, hash)
	if err != nil {
		t.Fatal(err)
	}
	c.Sig = asn1.BitString{Bytes: sig, BitLength: len(sig) * 8}
	out, err := asn1.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// material is a PKI for the tests: a root CA, an intermediate, and serving certificates.
type material struct {
	root, inter, leaf, interLeaf *cert
}

func newMaterial(t testing.TB) *material {
	t.Helper()
	m := &material{}
	m.root = issue(t, caTemplate("Registry Root CA"), nil, nil)
	m.inter = issue(t, caTemplate("Registry Intermediate CA"), nil, m.root)
	m.leaf = issue(t, leafTemplate(), nil, m.root)
	m.interLeaf = issue(t, leafTemplate(), nil, m.inter)
	return m
}
