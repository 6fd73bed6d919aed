// Package certs generates the registry's CA and serving certificate, and decides whether existing ones can be
// kept: the CA for as long as it can still issue a full-length serving certificate, the serving certificate while
// it is valid for the current names, issued by the current CA with the requested key, and not yet in the last
// third of its lifetime.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Defaults, as the issue and values.yaml give them.
const (
	DefaultLeafDuration = 90 * 24 * time.Hour
	DefaultCADuration   = 10 * 365 * 24 * time.Hour
	// Backdate is how far NotBefore lies before the time of issue, for nodes whose clocks lag.
	Backdate = 5 * time.Minute
)

// Key algorithms.
const (
	ECDSA = "ECDSA"
	RSA   = "RSA"
)

// KeySpec is a key algorithm and size: ECDSA 256 or 384 (the curve's bits), RSA 2048, 3072 or 4096.
type KeySpec struct {
	Algorithm string
	Size      int
}

// DefaultKeySpec is ECDSA P-256.
var DefaultKeySpec = KeySpec{Algorithm: ECDSA, Size: 256}

// ErrKeySpec is returned for an algorithm or size that is not offered.
var ErrKeySpec = errors.New("unsupported key algorithm or size")

// ParseKeySpec validates an algorithm (any case) and size; size 0 picks the algorithm's default.
func ParseKeySpec(algorithm string, size int) (KeySpec, error) {
	switch strings.ToUpper(algorithm) {
	case ECDSA:
		switch size {
		case 0, 256:
			return KeySpec{ECDSA, 256}, nil
		case 384:
			return KeySpec{ECDSA, 384}, nil
		}
		return KeySpec{}, fmt.Errorf("%w: ECDSA keys are 256 (P-256) or 384 (P-384) bits, not %d", ErrKeySpec, size)
	case RSA:
		switch size {
		case 0:
			return KeySpec{RSA, 2048}, nil
		case 2048, 3072, 4096:
			return KeySpec{RSA, size}, nil
		}
		return KeySpec{}, fmt.Errorf("%w: RSA keys are 2048, 3072 or 4096 bits, not %d", ErrKeySpec, size)
	}
	return KeySpec{}, fmt.Errorf("%w: the key algorithm is ECDSA or RSA, not %q", ErrKeySpec, algorithm)
}

func (k KeySpec) String() string { return fmt.Sprintf("%s %d", k.Algorithm, k.Size) }

// GenerateKey makes a key of the spec.
func GenerateKey(random io.Reader, k KeySpec) (crypto.Signer, error) {
	switch {
	case k.Algorithm == ECDSA && k.Size == 256:
		return ecdsa.GenerateKey(elliptic.P256(), random)
	case k.Algorithm == ECDSA && k.Size == 384:
		return ecdsa.GenerateKey(elliptic.P384(), random)
	case k.Algorithm == RSA:
		return rsa.GenerateKey(random, k.Size)
	}
	return nil, fmt.Errorf("%w: %s", ErrKeySpec, k)
}

// SpecOf returns the spec of a public key, and false for a key this package does not make.
func SpecOf(pub crypto.PublicKey) (KeySpec, bool) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return KeySpec{ECDSA, k.Curve.Params().BitSize}, true
	case *rsa.PublicKey:
		return KeySpec{RSA, k.N.BitLen()}, true
	}
	return KeySpec{}, false
}

// Pair is a certificate with its key, parsed and as PEM.
type Pair struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// Request describes a CA or a serving certificate to issue.
type Request struct {
	// CommonName of the subject. For a serving certificate, empty takes the first DNS name, else the first IP.
	CommonName string
	// Unit is the subject's organizational unit, if any.
	Unit     string
	IPs      []netip.Addr
	DNSNames []string
	Key      KeySpec
	// Duration is the lifetime from the time of issue.
	Duration time.Duration
}

// NewCA makes a self-signed CA that can issue serving certificates only (path length 0).
func NewCA(random io.Reader, req Request, now time.Time) (*Pair, error) {
	key, err := GenerateKey(random, req.Key)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	subject := pkix.Name{CommonName: req.CommonName, Organization: []string{"connected-registry"}}
	if req.Unit != "" {
		subject.OrganizationalUnit = []string{req.Unit}
	}
	tmpl := &x509.Certificate{
		Subject:               subject,
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(req.Duration),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	return sign(random, tmpl, key, nil)
}

// Issue makes a serving certificate for req, signed by ca. Its lifetime ends with the CA's at the latest.
func Issue(random io.Reader, ca *Pair, req Request, now time.Time) (*Pair, error) {
	if len(req.IPs) == 0 && len(req.DNSNames) == 0 {
		return nil, errors.New("a serving certificate needs at least one IP address or DNS name")
	}
	key, err := GenerateKey(random, req.Key)
	if err != nil {
		return nil, fmt.Errorf("generating the serving certificate's key: %w", err)
	}
	cn := req.CommonName
	if cn == "" && len(req.DNSNames) > 0 {
		cn = req.DNSNames[0]
	} else if cn == "" {
		cn = req.IPs[0].String()
	}
	usage := x509.KeyUsageDigitalSignature
	if req.Key.Algorithm == RSA {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(req.Duration),
		BasicConstraintsValid: true,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:              slices.Clone(req.DNSNames),
	}
	for _, ip := range req.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.Unmap().AsSlice()))
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	return sign(random, tmpl, key, ca)
}

func sign(random io.Reader, tmpl *x509.Certificate, key crypto.Signer, parent *Pair) (*Pair, error) {
	serial, err := rand.Int(random, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.Key, parent.Cert
	}
	der, err := x509.CreateCertificate(random, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// ParseChain parses every CERTIFICATE block of data that parses, in order: a leaf and the intermediates after it.
// Other blocks and certificates that do not parse are skipped.
func ParseChain(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// ParsePair parses one PEM certificate and its PEM private key, and checks that they belong together.
func ParsePair(certPEM, keyPEM []byte) (*Pair, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("no PEM private key")
	}
	var parsed any
	switch kb.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q for a private key", kb.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %w", err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T key cannot sign", parsed)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("the private key does not belong to the certificate")
	}
	return &Pair{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// RenewalTime is when a certificate enters the last third of its lifetime and is renewed.
func RenewalTime(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(life - life/3)
}

// CAProblem returns why ca cannot be kept at now, or "" when it can: it must be a CA whose key matches and
// that can still issue a serving certificate for its full leafDuration.
func CAProblem(ca *Pair, now time.Time, leafDuration time.Duration) string {
	c := ca.Cert
	switch {
	case !c.BasicConstraintsValid || !c.IsCA:
		return "its certificate is not a CA"
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return "its certificate lacks keyCertSign"
	case now.After(c.NotAfter):
		return fmt.Sprintf("it expired on %s", c.NotAfter.UTC().Format(time.RFC3339))
	case c.NotBefore.After(now.Add(Backdate)):
		return fmt.Sprintf("it is not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	case c.NotAfter.Before(now.Add(leafDuration)):
		return fmt.Sprintf("it expires on %s, before a serving certificate issued now would", c.NotAfter.UTC().Format(time.RFC3339))
	}
	return ""
}

// LeafProblem returns why leaf cannot be kept for req at now, or "" when it can.
func LeafProblem(leaf, ca *Pair, req Request, now time.Time) string {
	c := leaf.Cert
	if !bytes.Equal(c.RawIssuer, ca.Cert.RawSubject) || ca.Cert.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) != nil {
		return "it was not issued by the current CA"
	}
	if spec, ok := SpecOf(c.PublicKey); !ok || spec != req.Key {
		return fmt.Sprintf("its key is not %s", req.Key)
	}
	if want, have := sanSet(req.IPs, req.DNSNames), sanSetOf(c); !slices.Equal(want, have) {
		return fmt.Sprintf("its names (%s) are not the requested ones (%s)", strings.Join(have, ", "), strings.Join(want, ", "))
	}
	if c.NotBefore.After(now.Add(Backdate)) {
		return fmt.Sprintf("it is not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(c.NotAfter) {
		return fmt.Sprintf("it expired on %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	if renew := RenewalTime(c); !now.Before(renew) {
		return fmt.Sprintf("it is due for renewal since %s (two thirds of its lifetime)", renew.UTC().Format(time.RFC3339))
	}
	return ""
}

// sanSet is the de-duplicated list of SANs: sorted "IP:…" entries, then sorted "DNS:…" entries in lower case.
func sanSet(ips []netip.Addr, dns []string) []string {
	var ipSANs, dnsSANs []string
	for _, ip := range ips {
		ipSANs = append(ipSANs, "IP:"+ip.Unmap().String())
	}
	for _, n := range dns {
		dnsSANs = append(dnsSANs, "DNS:"+strings.ToLower(n))
	}
	slices.Sort(ipSANs)
	slices.Sort(dnsSANs)
	return append(slices.Compact(ipSANs), slices.Compact(dnsSANs)...)
}

func sanSetOf(c *x509.Certificate) []string {
	var ips []netip.Addr
	for _, ip := range c.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			ips = append(ips, a)
		}
	}
	return sanSet(ips, c.DNSNames)
}

// SANs lists a certificate's names as IP:… and DNS:…, for messages.
func SANs(c *x509.Certificate) string { return strings.Join(sanSetOf(c), ", ") }
