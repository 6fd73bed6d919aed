package tlscheck_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

var (
	oidP384          = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidSecp256k1     = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidMD5WithRSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}
	svcSAN           = "IP:10.96.0.50,DNS:cr-connected-registry,DNS:cr-connected-registry.connected-registry,DNS:cr-connected-registry.connected-registry.svc,DNS:cr-connected-registry.connected-registry.svc.cluster.local"
	secretCreateHint = "kubectl -n connected-registry create secret generic k8secret --type=kubernetes.io/tls --from-file=tls.crt=<certificate chain PEM> --from-file=tls.key=<key PEM> --from-file=ca.crt=<CA PEM>"
)

type values struct{ crt, key, ca string }

// TestCheckValues holds one case per bad input of SPEC §7 that concerns the TLS values, with the exact message a
// user sees, and the good inputs that must pass.
func TestCheckValues(t *testing.T) {
	t.Parallel()
	m := newMaterial(t)
	good := values{b64(certPEM(m.leaf)), b64(keyPEM(t, m.leaf.key)), b64(certPEM(m.root))}
	with := func(f func(v *values)) values { v := good; f(&v); return v }

	// Certificates for single cases.
	rsaRoot := issue(t, caTemplate("RSA Root CA"), rsaKey(t, 2048), nil)
	sha1Leaf := issue(t, leafTemplate(), nil, rsaRoot, func(c *x509.Certificate) { c.SignatureAlgorithm = x509.SHA1WithRSA })
	md5DER := resign(t, sha1Leaf.Raw, oidSHA1WithRSA, oidMD5WithRSA, rsaRoot.key, crypto.MD5)
	rsa1024 := issue(t, leafTemplate(), rsaKey(t, 1024), m.root)
	hugeN := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 9000), big.NewInt(1))
	rsa9001 := issueForPublicKey(t, leafTemplate(), &rsa.PublicKey{N: hugeN, E: 65537}, m.root)
	p224Key, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(t, err)
	p224 := issue(t, leafTemplate(), p224Key, m.root)
	p384Key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	k1DER := resign(t, issue(t, leafTemplate(), p384Key, m.root).Raw, oidP384, oidSecp256k1, m.root.key, crypto.SHA256)
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	edLeaf := issue(t, leafTemplate(), ed, m.root)
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	x25519DER, err := x509.MarshalPKCS8PrivateKey(x25519)
	require.NoError(t, err)
	otherRoot := issue(t, caTemplate("Other Root CA"), nil, nil)
	otherLeaf := issue(t, leafTemplate(), nil, otherRoot)
	oldRoot := issue(t, caTemplate("Old Root CA"), nil, nil, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.AddDate(-10, 0, 0), now.AddDate(0, -1, 0)
	})
	expiredLeaf := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.AddDate(0, 0, -100), now.AddDate(0, 0, -10)
	})
	expiredRoot := issue(t, caTemplate("Registry Root CA"), nil, nil, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.AddDate(-10, 0, 0), now.Add(-time.Hour)
	})
	leafOfExpiredRoot := issue(t, leafTemplate(), nil, expiredRoot)
	expiredInter := issue(t, caTemplate("Registry Intermediate CA"), nil, m.root, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.AddDate(-2, 0, 0), now.AddDate(0, 0, -3)
	})
	leafOfExpiredInter := issue(t, leafTemplate(), nil, expiredInter)
	future := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.Add(4*24*time.Hour), now.Add(94*24*time.Hour)
	})
	inSkew := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.Add(3*time.Minute), now.Add(90*24*time.Hour)
	})
	renewing := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.AddDate(0, 0, -80), now.AddDate(0, 0, 10)
	})
	noSANs := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.Subject.CommonName, c.IPAddresses, c.DNSNames = clusterIP, nil, nil
	})
	otherIP := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.ParseIP("10.96.0.51")}
	})
	ipAsDNS := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.IPAddresses, c.DNSNames = nil, append([]string{clusterIP}, dnsNames...)
	})
	otherIPAsDNS := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.DNSNames = append([]string{"192.168.1.10"}, dnsNames...)
	})
	ipOnly := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) { c.DNSNames = nil })
	wildcard := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.DNSNames = []string{"*.connected-registry.svc"}
	})
	clientOnly := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageCodeSigning}
	})
	clientInter := issue(t, caTemplate("Client Intermediate CA"), nil, m.root, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	leafOfClientInter := issue(t, leafTemplate(), nil, clientInter)
	clientRoot := issue(t, caTemplate("Client Root CA"), nil, nil, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	leafOfClientRoot := issue(t, leafTemplate(), nil, clientRoot)
	leafIsCA := issue(t, leafTemplate(), nil, m.root, func(c *x509.Certificate) { c.IsCA = true })
	notCA := issue(t, caTemplate("Not A CA"), nil, nil, func(c *x509.Certificate) { c.IsCA = false })
	leafOfNotCA := issue(t, leafTemplate(), nil, notCA)
	noCertSign := issue(t, caTemplate("No CertSign CA"), nil, nil, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })
	leafOfNoCertSign := issue(t, leafTemplate(), nil, noCertSign)
	notCAInter := issue(t, caTemplate("Not A CA Intermediate"), nil, m.root, func(c *x509.Certificate) { c.IsCA = false })
	leafOfNotCAInter := issue(t, leafTemplate(), nil, notCAInter)
	selfSigned := issue(t, leafTemplate(), nil, nil, func(c *x509.Certificate) {
		// What `openssl req -x509 -addext "subjectAltName = IP:..."` makes: CA:TRUE, no key usages, the IP only.
		c.Subject.CommonName, c.IsCA, c.KeyUsage, c.ExtKeyUsage, c.DNSNames = clusterIP, true, 0, nil, nil
	})
	selfSignedWithNames := issue(t, leafTemplate(), nil, nil, func(c *x509.Certificate) { c.IsCA = true })
	var many []*cert
	for range 11 {
		many = append(many, m.root)
	}
	bigChain := append([]byte(strings.Repeat("#", tlscheck.MaxChainSize)+"\n"), certPEM(m.leaf)...)
	bigKey := append([]byte(strings.Repeat("#", tlscheck.MaxKeySize)+"\n"), keyPEM(t, m.leaf.key)...)
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	sec1, err := x509.MarshalECPrivateKey(m.leaf.key.(*ecdsa.PrivateKey))
	require.NoError(t, err)
	sec1PEM := append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)
	rsaLeaf := issue(t, leafTemplate(), rsaKey(t, 2048), m.root)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey(t, 2048))})
	legacyEncrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{
		"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF",
	}, Bytes: []byte("ciphertext")})
	pkcs8Encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("ciphertext")})

	tests := []struct {
		name       string
		in         values
		opts       func(*tlscheck.Options)
		wantCheck  string
		wantStatus tlscheck.Status
		wantErr    error
		wantMsg    string
	}{
		// Accepted material.
		{
			name: "a serving certificate issued by the given CA should pass",
			in:   good,
		},
		{
			name: "a chain through an intermediate, with the root as CA, should pass",
			in:   values{b64(certPEM(m.interLeaf, m.inter)), b64(keyPEM(t, m.interLeaf.key)), b64(certPEM(m.root))},
		},
		{
			name: "a chain that ends with its root should pass",
			in:   values{b64(certPEM(m.interLeaf, m.inter, m.root)), b64(keyPEM(t, m.interLeaf.key)), b64(certPEM(m.root))},
		},
		{
			name: "a chain that ends with its root should pass without tls.cacrt, since the chart then trusts tls.crt",
			in:   values{b64(certPEM(m.interLeaf, m.inter, m.root)), b64(keyPEM(t, m.interLeaf.key)), ""},
		},
		{
			name: "base64 wrapped at 76 columns, as base64 prints it by default, should pass",
			in:   with(func(v *values) { v.crt = wrap(v.crt, 76) }),
		},
		{
			name: "a CA bundle that also holds an expired old CA, as during a CA rotation, should pass",
			in:   with(func(v *values) { v.ca = b64(certPEM(oldRoot, m.root)) }),
		},
		{
			name: "an RSA 2048 key in PKCS#1 should pass",
			in:   values{b64(certPEM(rsaLeaf)), b64(pkcs1), good.ca},
		},
		{
			name: "an EC key in SEC 1 after its EC PARAMETERS, as openssl ecparam -genkey writes it, should pass",
			in:   with(func(v *values) { v.key = b64(sec1PEM) }),
		},
		{
			name: "an Ed25519 key should pass",
			in:   values{b64(certPEM(edLeaf)), b64(keyPEM(t, ed)), good.ca},
		},
		{
			name: "a self-signed certificate with the Service names given as its own CA should pass",
			in:   values{b64(certPEM(selfSignedWithNames)), b64(keyPEM(t, selfSignedWithNames.key)), b64(certPEM(selfSignedWithNames))},
		},
		{
			name: "a certificate not valid for another three minutes should pass, within the clock skew",
			in:   with(func(v *values) { v.crt, v.key = b64(certPEM(inSkew)), b64(keyPEM(t, inSkew.key)) }),
		},
		{
			name: "a wildcard name covering the Service should pass",
			in:   with(func(v *values) { v.crt, v.key = b64(certPEM(wildcard)), b64(keyPEM(t, wildcard.key)) }),
		},
		{
			name:       "the tutorial's openssl req -x509 certificate given as its own CA should be accepted, warning only that it lacks the Service names",
			in:         values{b64(certPEM(selfSigned)), b64(keyPEM(t, selfSigned.key)), b64(certPEM(selfSigned))},
			wantCheck:  "subject-alternative-names",
			wantStatus: tlscheck.Warn,
			wantErr:    tlscheck.ErrDNSNameMissing,
			wantMsg:    "tls.crt holds none of the Service's DNS names (cr-connected-registry, cr-connected-registry.connected-registry, cr-connected-registry.connected-registry.svc, cr-connected-registry.connected-registry.svc.cluster.local), so clients that reach the registry by name reject it (nodes use the ClusterIP and are fine): add DNS:cr-connected-registry.connected-registry.svc to its subject alternative names when it is next issued",
		},
		{
			name:       "the tutorial's self-signed certificate without tls.cacrt should be accepted the same way",
			in:         values{b64(certPEM(selfSigned)), b64(keyPEM(t, selfSigned.key)), ""},
			wantCheck:  "subject-alternative-names",
			wantStatus: tlscheck.Warn,
			wantErr:    tlscheck.ErrDNSNameMissing,
			wantMsg:    "tls.crt holds none of the Service's DNS names (cr-connected-registry, cr-connected-registry.connected-registry, cr-connected-registry.connected-registry.svc, cr-connected-registry.connected-registry.svc.cluster.local), so clients that reach the registry by name reject it (nodes use the ClusterIP and are fine): add DNS:cr-connected-registry.connected-registry.svc to its subject alternative names when it is next issued",
		},

		// Encoding.
		{
			name:      "invalid base64 should fail naming the character",
			in:        with(func(v *values) { v.crt = "LS0t!" + v.crt[5:] }),
			wantCheck: "encoding", wantErr: tlscheck.ErrBase64,
			wantMsg: "tls.crt is not valid base64 ('!' at character 5 is not a base64 character): give the output of `base64 -w0 <file>` of the PEM file",
		},
		{
			name:      "base64 without its padding should fail",
			in:        with(func(v *values) { v.key = strings.TrimRight(v.key, "=") + "A" }),
			wantCheck: "encoding", wantErr: tlscheck.ErrBase64,
			wantMsg: "tls.key is not valid base64 (it ends early or lacks its '=' padding): give the output of `base64 -w0 <file>` of the PEM file",
		},
		{
			name:      "padding in the middle should fail naming the character",
			in:        with(func(v *values) { v.key = v.key[:8] + "=" + v.key[9:] }),
			wantCheck: "encoding", wantErr: tlscheck.ErrBase64,
			wantMsg: "tls.key is not valid base64 ('=' at character 9 is misplaced): give the output of `base64 -w0 <file>` of the PEM file",
		},
		{
			name:      "typographic quotes copied from a document should fail",
			in:        with(func(v *values) { v.crt = "“" + v.crt + "”" }),
			wantCheck: "encoding", wantErr: tlscheck.ErrTypographicQuotes,
			wantMsg: "tls.crt contains typographic quotes (“ ” ‘ ’), probably copied from a document: give it without them",
		},
		{
			name:      "base64 applied twice should fail",
			in:        with(func(v *values) { v.ca = b64([]byte(v.ca)) }),
			wantCheck: "encoding", wantErr: tlscheck.ErrBase64Twice,
			wantMsg: "tls.cacrt is base64-encoded twice: decode it once (`base64 -d`) and give the result",
		},
		{
			name:      "PEM text instead of base64 should fail",
			in:        with(func(v *values) { v.crt = string(certPEM(m.leaf)) }),
			wantCheck: "encoding", wantErr: tlscheck.ErrPEMNotBase64,
			wantMsg: "tls.crt holds PEM text, but it must be base64-encoded: give the output of `base64 -w0 <file>`",
		},
		{
			name:      "an empty tls.key should fail",
			in:        with(func(v *values) { v.key = " \n" }),
			wantCheck: "encoding", wantErr: tlscheck.ErrNoPEM,
			wantMsg: "tls.key is empty: give the output of `base64 -w0 <file>` of the PEM file",
		},

		// Size.
		{
			name:      "a key over 13,000 bytes should fail",
			in:        with(func(v *values) { v.key = b64(bigKey) }),
			wantCheck: "size", wantErr: tlscheck.ErrTooLarge,
			wantMsg: "tls.key is " + itoa(len(bigKey)) + " bytes, more than the 13000 bytes of the largest private key accepted (16k-bit RSA): give only the private key of the serving certificate",
		},
		{
			name:      "a chain over 65,000 bytes should fail",
			in:        with(func(v *values) { v.crt = b64(bigChain) }),
			wantCheck: "size", wantErr: tlscheck.ErrTooLarge,
			wantMsg: "tls.crt is " + itoa(len(bigChain)) + " bytes, more than the 65000 bytes of a chain of 10 large certificates: give only the serving certificate and its intermediates",
		},

		// PEM.
		{
			name:      "base64 of something that is not PEM should fail",
			in:        with(func(v *values) { v.key = b64([]byte("hello")) }),
			wantCheck: "pem", wantErr: tlscheck.ErrNoPEM,
			wantMsg: `tls.key decodes to something that is not PEM (no "-----BEGIN" line): give the output of ` + "`base64 -w0 <file>`" + ` of the PEM file`,
		},
		{
			name:      "a DER certificate should fail with the conversion command",
			in:        with(func(v *values) { v.crt = b64(m.leaf.Raw) }),
			wantCheck: "pem", wantErr: tlscheck.ErrDER,
			wantMsg: "tls.crt is a DER (binary) certificate, not PEM: convert it with `openssl x509 -inform der -in <certificate> -out <certificate>.pem`, then give the output of `base64 -w0 <file>` of the PEM file",
		},
		{
			name:      "a PEM block cut short should fail as damaged",
			in:        with(func(v *values) { p := certPEM(m.leaf); v.crt = b64(p[:len(p)-30]) }),
			wantCheck: "pem", wantErr: tlscheck.ErrPEMDamaged,
			wantMsg: `tls.crt has a damaged PEM block after 0 good ones (a "-----BEGIN" line without its "-----END" line, or invalid base64 between them): give the PEM file unchanged`,
		},
		{
			name:      "a private key in tls.crt should fail",
			in:        with(func(v *values) { v.crt = b64(append(certPEM(m.leaf), keyPEM(t, m.leaf.key)...)) }),
			wantCheck: "pem", wantErr: tlscheck.ErrWrongBlockType,
			wantMsg: `tls.crt holds a private key (PEM block 2 is "PRIVATE KEY") where certificates were expected: remove it, and give the private key in tls.key only`,
		},
		{
			name:      "a certificate in tls.key should fail as swapped",
			in:        with(func(v *values) { v.key = v.crt }),
			wantCheck: "pem", wantErr: tlscheck.ErrWrongBlockType,
			wantMsg: "tls.key holds a certificate (PEM block 1) where the private key was expected: give the private key in tls.key and the certificate in tls.crt (are they swapped?)",
		},
		{
			name: "a certificate signing request in tls.crt should fail",
			in: with(func(v *values) {
				v.crt = b64(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}}))
			}),
			wantCheck: "pem", wantErr: tlscheck.ErrWrongBlockType,
			wantMsg: `tls.crt holds a certificate signing request (PEM block 1 is "CERTIFICATE REQUEST"), not a certificate: give the certificate your CA issued for it`,
		},
		{
			name:      "a public key in tls.key should fail",
			in:        with(func(v *values) { v.key = b64(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}})) }),
			wantCheck: "pem", wantErr: tlscheck.ErrWrongBlockType,
			wantMsg: `tls.key holds a public key (PEM block 1 is "PUBLIC KEY"), not the private key: give the private key the certificate was issued for`,
		},
		{
			name:      "two private keys in tls.key should fail",
			in:        with(func(v *values) { v.key = b64(append(keyPEM(t, m.leaf.key), keyPEM(t, m.root.key)...)) }),
			wantCheck: "pem", wantErr: tlscheck.ErrWrongBlockType,
			wantMsg: "tls.key holds 2 private keys: give only the key of the serving certificate",
		},
		{
			name:      "eleven certificates should fail",
			in:        with(func(v *values) { v.ca = b64(certPEM(many...)) }),
			wantCheck: "pem", wantErr: tlscheck.ErrTooManyCertificates,
			wantMsg: "tls.cacrt holds 11 certificates, more than the 10 accepted: give only the CA that issued the serving certificate",
		},
		{
			name:      "eleven certificates in the chain should fail",
			in:        with(func(v *values) { v.crt = b64(certPEM(append([]*cert{m.leaf}, many[:10]...)...)) }),
			wantCheck: "pem", wantErr: tlscheck.ErrTooManyCertificates,
			wantMsg: "tls.crt holds 11 certificates, more than the 10 of a chain: give only the serving certificate and its intermediates",
		},
		{
			name:      "a PKCS#8 encrypted key should fail",
			in:        with(func(v *values) { v.key = b64(pkcs8Encrypted) }),
			wantCheck: "pem", wantErr: tlscheck.ErrEncryptedKey,
			wantMsg: "tls.key is encrypted with a passphrase, which the registry cannot enter: decrypt it with `openssl pkey -in <key> -out <decrypted key>` and give that",
		},
		{
			name:      "a legacy encrypted PEM key should fail",
			in:        with(func(v *values) { v.key = b64(legacyEncrypted) }),
			wantCheck: "pem", wantErr: tlscheck.ErrEncryptedKey,
			wantMsg: "tls.key is encrypted with a passphrase, which the registry cannot enter: decrypt it with `openssl pkey -in <key> -out <decrypted key>` and give that",
		},

		// Parsing and algorithms.
		{
			name:      "a certificate that does not parse should fail",
			in:        with(func(v *values) { v.crt = b64(derPEM([]byte{0x30, 0x03, 0x02, 0x01, 0x01})) }),
			wantCheck: "parse", wantErr: tlscheck.ErrParse,
			wantMsg: "tls.crt cannot be parsed (x509: malformed tbs certificate): give the certificate as the CA issued it",
		},
		{
			name:      "a certificate on secp256k1 should fail naming the curve",
			in:        with(func(v *values) { v.crt = b64(derPEM(k1DER)) }),
			wantCheck: "parse", wantErr: tlscheck.ErrUnsupportedCurve,
			wantMsg: "tls.crt uses the elliptic curve secp256k1, which TLS clients do not support: use P-256, P-384 or P-521 (`openssl ecparam -name prime256v1 -genkey`)",
		},
		{
			name:      "an X25519 key, which cannot sign, should fail",
			in:        with(func(v *values) { v.key = b64(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x25519DER})) }),
			wantCheck: "parse", wantErr: tlscheck.ErrUnsupportedKeyAlgorithm,
			wantMsg: "tls.key is a key of a type TLS servers cannot use (unsupported key type: *ecdh.PrivateKey): use an ECDSA P-256 or RSA key",
		},
		{
			name:      "an RSA key of 1024 bits should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(rsa1024)), b64(keyPEM(t, rsa1024.key)) }),
			wantCheck: "key-algorithm", wantErr: tlscheck.ErrRSAKeySize,
			wantMsg: "tls.crt has a 1024-bit RSA key, and clients refuse RSA keys under 2048 bits: use a key of 2048 to 8192 bits (`openssl genrsa 4096`) or ECDSA P-256",
		},
		{
			name:      "an RSA key of more than 8192 bits should fail",
			in:        with(func(v *values) { v.crt = b64(certPEM(rsa9001)) }),
			wantCheck: "key-algorithm", wantErr: tlscheck.ErrRSAKeySize,
			wantMsg: "tls.crt has a 9001-bit RSA key, more than the 8192 bits TLS clients accept: use a key of 2048 to 8192 bits (`openssl genrsa 4096`) or ECDSA P-256",
		},
		{
			name:      "an ECDSA key on P-224 should fail naming the curve",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(p224)), b64(keyPEM(t, p224Key)) }),
			wantCheck: "key-algorithm", wantErr: tlscheck.ErrUnsupportedCurve,
			wantMsg: "tls.crt uses the elliptic curve P-224, which TLS clients do not support: use P-256, P-384 or P-521 (`openssl ecparam -name prime256v1 -genkey`)",
		},
		{
			name:      "a SHA-1 signature should fail",
			in:        values{b64(certPEM(sha1Leaf)), b64(keyPEM(t, sha1Leaf.key)), b64(certPEM(rsaRoot))},
			wantCheck: "signature-algorithm", wantErr: tlscheck.ErrWeakSignature,
			wantMsg: "tls.crt is signed with SHA-1 (SHA1-RSA), which clients reject: reissue it signed with SHA-256 (`openssl ... -sha256`)",
		},
		{
			name:      "an MD5 signature should fail",
			in:        values{b64(derPEM(md5DER)), b64(keyPEM(t, sha1Leaf.key)), b64(certPEM(rsaRoot))},
			wantCheck: "signature-algorithm", wantErr: tlscheck.ErrWeakSignature,
			wantMsg: "tls.crt is signed with MD5 (MD5-RSA), which clients reject: reissue it signed with SHA-256 (`openssl ... -sha256`)",
		},

		// How the values fit together.
		{
			name:      "a key that does not match the certificate should fail",
			in:        with(func(v *values) { v.key = b64(keyPEM(t, ecKey(t))) }),
			wantCheck: "key-pair", wantErr: tlscheck.ErrKeyMismatch,
			wantMsg: "tls.key does not match the certificate in tls.crt (CN=registry): give the private key the certificate was issued for, or a certificate issued for this key",
		},
		{
			name:      "the CA's key given as tls.key should fail naming the CA",
			in:        with(func(v *values) { v.key = b64(keyPEM(t, m.root.key)) }),
			wantCheck: "key-pair", wantErr: tlscheck.ErrKeyMismatch,
			wantMsg: "tls.key is the key of the CA tls.cacrt (CN=Registry Root CA), not of the serving certificate in tls.crt: give the serving certificate's private key",
		},
		{
			name:      "a chain starting with the intermediate should fail as out of order",
			in:        values{b64(certPEM(m.inter, m.interLeaf)), b64(keyPEM(t, m.interLeaf.key)), b64(certPEM(m.root))},
			wantCheck: "key-pair", wantErr: tlscheck.ErrChainOrder,
			wantMsg: "tls.crt does not start with the serving certificate: certificate 2 of tls.crt (CN=registry) is the one tls.key belongs to; list it first, then each issuer in turn",
		},
		{
			name:      "a chain with the root before the intermediate should fail as out of order",
			in:        values{b64(certPEM(m.interLeaf, m.root, m.inter)), b64(keyPEM(t, m.interLeaf.key)), b64(certPEM(m.root))},
			wantCheck: "chain-order", wantErr: tlscheck.ErrChainOrder,
			wantMsg: "tls.crt lists its certificates out of order: the serving certificate (CN=registry) was issued by certificate 3 (CN=Registry Intermediate CA), which must come right after it; list the serving certificate first, then each issuer in turn",
		},
		{
			name:      "a certificate in the chain that issued nothing should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(m.interLeaf, otherRoot)), b64(keyPEM(t, m.interLeaf.key)) }),
			wantCheck: "chain-order", wantErr: tlscheck.ErrUnrelatedCertificate,
			wantMsg: "certificate 2 of tls.crt (CN=Other Root CA) did not issue the serving certificate (CN=registry): remove it from tls.crt, or replace it with the intermediate that did (CN=Registry Intermediate CA)",
		},
		{
			name:      "a chain not leading to the given CA should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(otherLeaf)), b64(keyPEM(t, otherLeaf.key)) }),
			wantCheck: "chain-to-ca", wantErr: tlscheck.ErrNotChained,
			wantMsg: "tls.crt does not lead to the CA in tls.cacrt: its chain ends with CN=registry, issued by CN=Other Root CA, but tls.cacrt holds CN=Registry Root CA; give the CA that issued it in tls.cacrt, or add the missing intermediate to tls.crt",
		},
		{
			name:      "a chain missing its intermediate should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(m.interLeaf)), b64(keyPEM(t, m.interLeaf.key)) }),
			wantCheck: "chain-to-ca", wantErr: tlscheck.ErrNotChained,
			wantMsg: "tls.crt does not lead to the CA in tls.cacrt: its chain ends with CN=registry, issued by CN=Registry Intermediate CA, but tls.cacrt holds CN=Registry Root CA; give the CA that issued it in tls.cacrt, or add the missing intermediate to tls.crt",
		},
		{
			name:      "a self-signed certificate with another CA given should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(selfSigned)), b64(keyPEM(t, selfSigned.key)) }),
			wantCheck: "chain-to-ca", wantErr: tlscheck.ErrNotChained,
			wantMsg: "tls.crt is self-signed, but tls.cacrt holds CN=Registry Root CA: give the content of tls.crt as tls.cacrt too (as for a certificate made with `openssl req -x509`), or a certificate that CA issued",
		},
		{
			name:      "no tls.cacrt for a certificate a CA issued should warn that nodes would pin it",
			in:        with(func(v *values) { v.ca = "" }),
			wantCheck: "chain-to-ca", wantStatus: tlscheck.Warn, wantErr: tlscheck.ErrCANotGiven,
			wantMsg: "tls.cacrt is empty, so nodes will trust tls.crt itself, and must be given the new one at every renewal: give the CA that issued it (CN=Registry Root CA) in tls.cacrt",
		},
		{
			name:      "the serving certificate given as tls.cacrt should warn that nodes would pin it",
			in:        with(func(v *values) { v.ca = v.crt }),
			wantCheck: "chain-to-ca", wantStatus: tlscheck.Warn, wantErr: tlscheck.ErrCANotGiven,
			wantMsg: "tls.cacrt holds CN=registry from tls.crt rather than the CA that issued it (CN=Registry Root CA), so nodes must be given the new one at every renewal: give that CA in tls.cacrt",
		},

		// Time.
		{
			name:      "an expired certificate should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(expiredLeaf)), b64(keyPEM(t, expiredLeaf.key)) }),
			wantCheck: "validity", wantErr: tlscheck.ErrExpired,
			wantMsg: "tls.crt expired on 2026-11-17T12:00:00Z (10 days ago): renew it and give the new certificate and key in tls.crt and tls.key",
		},
		{
			name:      "an expired CA should fail",
			in:        values{b64(certPEM(leafOfExpiredRoot)), b64(keyPEM(t, leafOfExpiredRoot.key)), b64(certPEM(expiredRoot))},
			wantCheck: "validity", wantErr: tlscheck.ErrExpired,
			wantMsg: "tls.cacrt (CN=Registry Root CA) expired on 2026-11-27T11:00:00Z (60 minutes ago): give the CA's current certificate, and a serving certificate it issued",
		},
		{
			name: "an expired intermediate should fail",
			in: with(func(v *values) {
				v.crt, v.key = b64(certPEM(leafOfExpiredInter, expiredInter)), b64(keyPEM(t, leafOfExpiredInter.key))
			}),
			wantCheck: "validity", wantErr: tlscheck.ErrExpired,
			wantMsg: "certificate 2 of tls.crt (CN=Registry Intermediate CA) expired on 2026-11-24T12:00:00Z (3 days ago): replace it with the current certificate of that CA",
		},
		{
			name:      "a certificate valid only in four days should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(future)), b64(keyPEM(t, future.key)) }),
			wantCheck: "validity", wantErr: tlscheck.ErrNotYetValid,
			wantMsg: "tls.crt is not valid before 2026-12-01T12:00:00Z (in 4 days): check the clock of the machine that issued it, or wait until then",
		},
		{
			name:      "a certificate in the last third of its lifetime should warn",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(renewing)), b64(keyPEM(t, renewing.key)) }),
			wantCheck: "renewal", wantStatus: tlscheck.Warn, wantErr: tlscheck.ErrRenewalWindow,
			wantMsg: "tls.crt expires on 2026-12-07T12:00:00Z (in 10 days), within the last third of its lifetime: renew it soon and give the new certificate and key in tls.crt and tls.key",
		},

		// CA flags.
		{
			name:      "a CA without CA:TRUE should fail",
			in:        values{b64(certPEM(leafOfNotCA)), b64(keyPEM(t, leafOfNotCA.key)), b64(certPEM(notCA))},
			wantCheck: "issuer-ca", wantErr: tlscheck.ErrNotCA,
			wantMsg: "tls.cacrt (CN=Not A CA) is not a CA certificate (basicConstraints CA:TRUE is missing), so clients reject the certificates it issued: recreate that CA with basicConstraints = critical, CA:TRUE",
		},
		{
			name: "an intermediate without CA:TRUE should fail",
			in: with(func(v *values) {
				v.crt, v.key = b64(certPEM(leafOfNotCAInter, notCAInter)), b64(keyPEM(t, leafOfNotCAInter.key))
			}),
			wantCheck: "issuer-ca", wantErr: tlscheck.ErrNotCA,
			wantMsg: "certificate 2 of tls.crt (CN=Not A CA Intermediate) is not a CA certificate (basicConstraints CA:TRUE is missing), so clients reject the certificates it issued: recreate that CA with basicConstraints = critical, CA:TRUE",
		},
		{
			name:      "a CA without keyCertSign should fail",
			in:        values{b64(certPEM(leafOfNoCertSign)), b64(keyPEM(t, leafOfNoCertSign.key)), b64(certPEM(noCertSign))},
			wantCheck: "issuer-ca", wantErr: tlscheck.ErrNoCertSign,
			wantMsg: "tls.cacrt (CN=No CertSign CA) lacks the keyCertSign key usage, so clients reject the certificates it issued: recreate that CA with keyUsage = critical, keyCertSign, cRLSign",
		},
		{
			name:      "a serving certificate that is a CA should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(leafIsCA)), b64(keyPEM(t, leafIsCA.key)) }),
			wantCheck: "leaf-ca", wantErr: tlscheck.ErrLeafIsCA,
			wantMsg: "tls.crt is a CA certificate (basicConstraints CA:TRUE) issued by CN=Registry Root CA, not a serving certificate: serve with a certificate that CA issues with basicConstraints CA:FALSE",
		},

		// Usage and names.
		{
			name:      "extended key usages without serverAuth should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(clientOnly)), b64(keyPEM(t, clientOnly.key)) }),
			wantCheck: "extended-key-usage", wantErr: tlscheck.ErrNoServerAuth,
			wantMsg: "tls.crt allows only the extended key usages clientAuth, codeSigning, not serverAuth, so clients refuse it from a server: reissue it with extendedKeyUsage = serverAuth",
		},
		{
			name: "an intermediate restricted to clientAuth should fail",
			in: with(func(v *values) {
				v.crt, v.key = b64(certPEM(leafOfClientInter, clientInter)), b64(keyPEM(t, leafOfClientInter.key))
			}),
			wantCheck: "extended-key-usage", wantErr: tlscheck.ErrNoServerAuth,
			wantMsg: "certificate 2 of tls.crt (CN=Client Intermediate CA) allows only the extended key usages clientAuth, not serverAuth, so clients refuse the serving certificates it issues: use an intermediate CA without that restriction",
		},
		{
			name:      "a CA restricted to clientAuth should fail",
			in:        values{b64(certPEM(leafOfClientRoot)), b64(keyPEM(t, leafOfClientRoot.key)), b64(certPEM(clientRoot))},
			wantCheck: "extended-key-usage", wantErr: tlscheck.ErrNoServerAuth,
			wantMsg: "tls.cacrt (CN=Client Root CA) allows only the extended key usages clientAuth, not serverAuth, so clients refuse the serving certificates it issues: use a CA without that restriction",
		},
		{
			name:      "a certificate without SANs should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(noSANs)), b64(keyPEM(t, noSANs.key)) }),
			wantCheck: "subject-alternative-names", wantErr: tlscheck.ErrNoSANs,
			wantMsg: `tls.crt has no subject alternative names, and clients ignore its common name "10.96.0.50": reissue it with -addext "subjectAltName = ` + svcSAN + `"`,
		},
		{
			name:      "a certificate without the ClusterIP should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(otherIP)), b64(keyPEM(t, otherIP.key)) }),
			wantCheck: "subject-alternative-names", wantErr: tlscheck.ErrClusterIPMissing,
			wantMsg: `tls.crt does not hold the ClusterIP 10.96.0.50 in its subject alternative names (it holds IP:10.96.0.51, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, and 1 more), so nodes pulling from 10.96.0.50:443 reject it: reissue it with -addext "subjectAltName = ` + svcSAN + `", or set service.clusterIP to an address it holds`,
		},
		{
			name:      "the ClusterIP written as a DNS SAN should fail",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(ipAsDNS)), b64(keyPEM(t, ipAsDNS.key)) }),
			wantCheck: "subject-alternative-names", wantErr: tlscheck.ErrIPAsDNS,
			wantMsg: `tls.crt holds the ClusterIP 10.96.0.50 as a DNS name (DNS:10.96.0.50), which clients never match against an address: reissue it with -addext "subjectAltName = ` + svcSAN + `"`,
		},
		{
			name:      "another address written as a DNS SAN should warn",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(otherIPAsDNS)), b64(keyPEM(t, otherIPAsDNS.key)) }),
			wantCheck: "subject-alternative-names", wantStatus: tlscheck.Warn, wantErr: tlscheck.ErrIPAsDNS,
			wantMsg: "tls.crt holds 192.168.1.10 as a DNS name, which clients never match against an address: write it as IP:192.168.1.10 when it is next issued",
		},
		{
			name:      "a certificate without the Service's DNS names should warn",
			in:        with(func(v *values) { v.crt, v.key = b64(certPEM(ipOnly)), b64(keyPEM(t, ipOnly.key)) }),
			wantCheck: "subject-alternative-names", wantStatus: tlscheck.Warn, wantErr: tlscheck.ErrDNSNameMissing,
			wantMsg: "tls.crt holds none of the Service's DNS names (cr-connected-registry, cr-connected-registry.connected-registry, cr-connected-registry.connected-registry.svc, cr-connected-registry.connected-registry.svc.cluster.local), so clients that reach the registry by name reject it (nodes use the ClusterIP and are fine): add DNS:cr-connected-registry.connected-registry.svc to its subject alternative names when it is next issued",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := options()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			r := tlscheck.CheckValues(tc.in.crt, tc.in.key, tc.in.ca, opts)
			assertReport(t, r, tc.wantCheck, tc.wantStatus, tc.wantErr, tc.wantMsg)
		})
	}
}

// assertReport checks the one problem of r, or that there is none.
func assertReport(t *testing.T, r tlscheck.Report, check string, status tlscheck.Status, kind error, msg string) {
	t.Helper()
	problems := r.Problems()
	if msg == "" {
		require.Empty(t, problems, "report: %v", r.Results)
		require.Equal(t, tlscheck.OK, r.Status())
		return
	}
	if status == tlscheck.OK {
		status = tlscheck.Fail
	}
	require.Len(t, problems, 1, "report: %v", r.Results)
	p := problems[0]
	require.Equal(t, check, p.Check)
	require.Equal(t, status, p.Status)
	require.EqualError(t, p.Err, msg)
	require.ErrorIs(t, p.Err, kind)
	require.Equal(t, status, r.Status())
	if status == tlscheck.Fail {
		require.Equal(t, check, r.Results[len(r.Results)-1].Check, "the chain stops at the first failure")
		require.EqualError(t, r.Err(), msg)
	} else {
		require.NoError(t, r.Err())
		require.Len(t, r.Results, len(tlscheck.CheckNames()), "a warning does not stop the chain")
	}
	require.Equal(t, msg, r.Summary())
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

func wrap(s string, width int) string {
	var b strings.Builder
	for len(s) > width {
		b.WriteString(s[:width] + "\n")
		s = s[width:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

// issueForPublicKey issues a certificate for a public key whose private key the test does not have.
func issueForPublicKey(t *testing.T, tmpl *x509.Certificate, pub crypto.PublicKey, parent *cert) *cert {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Certificate, pub, parent.key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &cert{Certificate: c}
}
