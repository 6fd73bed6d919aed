package certs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/connected-registry/connected-registry/internal/certs"
)

// BenchmarkNewCAAndIssue is what certgen does on a first run: a P-256 CA and a serving certificate.
func BenchmarkNewCAAndIssue(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ca, err := certs.NewCA(rand.Reader, certs.Request{CommonName: "ca", Key: certs.DefaultKeySpec, Duration: certs.DefaultCADuration}, now)
		if err != nil {
			b.Fatal(err)
		}
		leaf := certs.Request{IPs: []netip.Addr{ip}, DNSNames: dnsNames, Key: certs.DefaultKeySpec, Duration: certs.DefaultLeafDuration}
		if _, err := certs.Issue(rand.Reader, ca, leaf, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStdlibCalls is the sum of the standard-library calls NewCA and Issue make: two keys, two serial
// numbers, two signatures, two parses, two PKCS#8 encodings and four PEM encodings.
func BenchmarkStdlibCalls(b *testing.B) {
	b.ReportAllocs()
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	for b.Loop() {
		caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		s1, _ := rand.Int(rand.Reader, limit)
		caTmpl := &x509.Certificate{SerialNumber: s1, Subject: pkix.Name{CommonName: "ca"}, NotBefore: now, NotAfter: now.Add(certs.DefaultCADuration),
			IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign}
		caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
		caCert, _ := x509.ParseCertificate(caDER)
		caKeyDER, _ := x509.MarshalPKCS8PrivateKey(caKey)
		leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		s2, _ := rand.Int(rand.Reader, limit)
		leafTmpl := &x509.Certificate{SerialNumber: s2, Subject: pkix.Name{CommonName: "registry"}, NotBefore: now, NotAfter: now.Add(time.Hour),
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			IPAddresses: []net.IP{net.IP(ip.AsSlice())}, DNSNames: dnsNames}
		leafDER, _ := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, leafKey.Public(), caKey)
		if _, err := x509.ParseCertificate(leafDER); err != nil {
			b.Fatal(err)
		}
		leafKeyDER, _ := x509.MarshalPKCS8PrivateKey(leafKey)
		for _, blk := range []*pem.Block{{Type: "CERTIFICATE", Bytes: caDER}, {Type: "PRIVATE KEY", Bytes: caKeyDER}, {Type: "CERTIFICATE", Bytes: leafDER}, {Type: "PRIVATE KEY", Bytes: leafKeyDER}} {
			_ = pem.EncodeToMemory(blk)
		}
	}
}
