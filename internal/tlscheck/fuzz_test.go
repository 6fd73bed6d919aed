package tlscheck_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

var writeCorpus = flag.Bool("corpus", false, "rewrite the seed corpus under testdata/fuzz from freshly built certificates")

// FuzzCheckValues checks, for any three values: CheckValues does not panic; every verdict is consistent and its
// message is one line naming a value; the private key never appears in a message; and what the checks do not
// fail loads with tls.X509KeyPair and verifies for the ClusterIP against the CA, so an accepted value cannot
// break the registry. The seed corpus is in testdata/fuzz/FuzzCheckValues (go test -run TestSeedCorpus -corpus).
func FuzzCheckValues(f *testing.F) {
	f.Add("", "", "")
	f.Add("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t", "LS0t", "")
	f.Add("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "x", "y")
	f.Fuzz(func(t *testing.T, crt, key, ca string) {
		r := tlscheck.CheckValues(crt, key, ca, options())
		checkReport(t, r, key)
		if r.Status() == tlscheck.Fail {
			return
		}
		crtPEM, keyPEM, caPEM := mustDecode(t, crt), mustDecode(t, key), mustDecode(t, ca)
		if len(bytes.TrimSpace(caPEM)) == 0 {
			caPEM = crtPEM
		}
		checkServes(t, r, crtPEM, keyPEM, caPEM)
	})
}

// FuzzCheckSecret is FuzzCheckValues for the PEM data of an existing Secret.
func FuzzCheckSecret(f *testing.F) {
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"), []byte("LS0tLS1CRUdJTi"))
	f.Fuzz(func(t *testing.T, crt, key, ca []byte) {
		sec := tlscheck.Secret{Namespace: ns, Name: "k8secret", Found: true, Type: tlscheck.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ca}}
		r := tlscheck.CheckSecret(sec, options())
		checkReport(t, r, string(key))
		if r.Status() == tlscheck.Fail {
			return
		}
		checkServes(t, r, crt, key, ca)
	})
}

func checkReport(t *testing.T, r tlscheck.Report, key string) {
	t.Helper()
	if len(r.Results) == 0 {
		t.Fatal("no verdict at all")
	}
	for i, res := range r.Results {
		if (res.Status == tlscheck.OK) != (res.Err == nil) {
			t.Fatalf("check %s: status %v with error %v", res.Check, res.Status, res.Err)
		}
		if res.Status == tlscheck.Fail && i != len(r.Results)-1 {
			t.Fatalf("the chain went on after %s failed", res.Check)
		}
		if res.Err == nil {
			continue
		}
		msg := res.Err.Error()
		if strings.ContainsAny(msg, "\r\n") || strings.HasSuffix(msg, ".") {
			t.Fatalf("check %s: message %q is not one line without a trailing period", res.Check, msg)
		}
		if !strings.HasPrefix(msg, "tls.") && !strings.HasPrefix(msg, "certificate ") && !strings.HasPrefix(msg, "Secret ") {
			t.Fatalf("check %s: message %q does not start with the value it is about", res.Check, msg)
		}
		if k := strings.TrimSpace(key); len(k) >= 24 && strings.Contains(msg, k) {
			t.Fatalf("check %s: message %q holds the private key", res.Check, msg)
		}
	}
}

// checkServes is the oracle: material the checks let through works for a TLS server and its clients.
func checkServes(t *testing.T, r tlscheck.Report, crtPEM, keyPEM, caPEM []byte) {
	t.Helper()
	pair, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		t.Fatalf("checks passed (%v) but tls.X509KeyPair fails: %v", r.Results, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("checks passed (%v) but the CA holds no certificate", r.Results)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now.Add(tlscheck.DefaultSkew), DNSName: clusterIP,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		t.Fatalf("checks passed (%v) but a client rejects the certificate: %v", r.Results, err)
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s))
	if err != nil {
		t.Fatalf("checks passed but %q is not base64: %v", s, err)
	}
	return b
}

// TestSeedCorpus writes the fuzz seed corpus with -corpus: good material of each kind and near misses, valid
// at the tests' fake time for ten years. Without -corpus it only checks that the corpus is there.
func TestSeedCorpus(t *testing.T) {
	dirs := map[string]string{
		"values": filepath.Join("testdata", "fuzz", "FuzzCheckValues"),
		"secret": filepath.Join("testdata", "fuzz", "FuzzCheckSecret"),
	}
	if !*writeCorpus {
		for _, dir := range dirs {
			entries, err := os.ReadDir(dir)
			if err != nil || len(entries) == 0 {
				t.Fatalf("no seed corpus in %s: run go test -run TestSeedCorpus -corpus (%v)", dir, err)
			}
		}
		return
	}
	m := newMaterial(t)
	long := func(c *x509.Certificate) { c.NotAfter = now.AddDate(10, 0, 0) }
	leaf := issue(t, leafTemplate(), nil, m.root, long)
	interLeaf := issue(t, leafTemplate(), nil, m.inter, long)
	self := issue(t, leafTemplate(), nil, nil, long, func(c *x509.Certificate) {
		c.Subject.CommonName, c.IsCA, c.KeyUsage, c.ExtKeyUsage, c.DNSNames = clusterIP, true, 0, nil, nil
	})
	rsaLeaf := issue(t, leafTemplate(), rsaKey(t, 2048), m.root, long)
	seeds := map[string][3][]byte{
		"ca-and-leaf":           {certPEM(leaf), keyPEM(t, leaf.key), certPEM(m.root)},
		"intermediate-chain":    {certPEM(interLeaf, m.inter), keyPEM(t, interLeaf.key), certPEM(m.root)},
		"chain-with-root":       {certPEM(interLeaf, m.inter, m.root), keyPEM(t, interLeaf.key), nil},
		"openssl-self-signed":   {certPEM(self), keyPEM(t, self.key), certPEM(self)},
		"rsa-2048":              {certPEM(rsaLeaf), keyPEM(t, rsaLeaf.key), certPEM(m.root)},
		"chain-out-of-order":    {certPEM(interLeaf, m.root, m.inter), keyPEM(t, interLeaf.key), certPEM(m.root)},
		"key-mismatch":          {certPEM(leaf), keyPEM(t, self.key), certPEM(m.root)},
		"swapped":               {keyPEM(t, leaf.key), certPEM(leaf), certPEM(m.root)},
		"ca-only-no-leaf":       {certPEM(m.root), keyPEM(t, m.root.key), certPEM(m.root)},
		"missing-intermediate":  {certPEM(interLeaf), keyPEM(t, interLeaf.key), certPEM(m.root)},
		"self-signed-other-ca":  {certPEM(self), keyPEM(t, self.key), certPEM(m.root)},
		"combined-pem-with-key": {append(certPEM(leaf), keyPEM(t, leaf.key)...), keyPEM(t, leaf.key), certPEM(m.root)},
	}
	for dir := range dirs {
		if err := os.RemoveAll(dirs[dir]); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dirs[dir], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, s := range seeds {
		values := fmt.Sprintf("go test fuzz v1\nstring(%q)\nstring(%q)\nstring(%q)\n", b64(s[0]), b64(s[1]), b64(s[2]))
		secret := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n[]byte(%q)\n", s[0], s[1], s[2])
		if err := os.WriteFile(filepath.Join(dirs["values"], name), []byte(values), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirs["secret"], name), []byte(secret), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Encodings only the values meet.
	extra := map[string]string{
		"wrapped-base64":    wrap(b64(certPEM(leaf)), 76),
		"base64-twice":      b64([]byte(b64(certPEM(leaf)))),
		"pem-not-base64":    string(certPEM(leaf)),
		"unpadded":          strings.TrimRight(b64(certPEM(leaf)), "="),
		"typographic-quote": "“" + b64(certPEM(leaf)) + "”",
	}
	for name, crt := range extra {
		values := fmt.Sprintf("go test fuzz v1\nstring(%q)\nstring(%q)\nstring(%q)\n", crt, b64(keyPEM(t, leaf.key)), b64(certPEM(m.root)))
		if err := os.WriteFile(filepath.Join(dirs["values"], name), []byte(values), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
