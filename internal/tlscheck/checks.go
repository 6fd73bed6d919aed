package tlscheck

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// checkSecretShape: the Secret exists, is kubernetes.io/tls and holds the three keys.
func checkSecretShape(s *state) (Status, error) {
	sec := s.secret
	src := s.src.(secretSource)
	if !sec.Found {
		return Fail, newError(ErrSecretMissing, "Secret %s named by tls.secret does not exist: create it with %s, or correct tls.secret",
			src.ref(), src.createCommand())
	}
	if sec.Type != SecretTypeTLS {
		return Fail, newError(ErrSecretType, "Secret %s is of type %q, not %s: recreate it with %s",
			src.ref(), sec.Type, SecretTypeTLS, src.createCommand())
	}
	for _, key := range []string{KeyTLSCrt, KeyTLSKey, KeyCACrt} {
		v, ok := sec.Data[key]
		what := map[string]string{
			KeyTLSCrt: "the serving certificate",
			KeyTLSKey: "its private key",
			KeyCACrt:  "the CA nodes will trust",
		}[key]
		switch {
		case !ok:
			return Fail, newError(ErrSecretKeyMissing, "Secret %s lacks the key %s (%s): recreate it with %s", src.ref(), key, what, src.createCommand())
		case len(bytes.TrimSpace(v)) == 0:
			return Fail, newError(ErrSecretKeyMissing, "Secret %s has an empty %s (%s): recreate it with %s", src.ref(), key, what, src.createCommand())
		}
	}
	return OK, nil
}

// checkEncoding: values are base64 of PEM, encoded once; Secret data is PEM.
func checkEncoding(s *state) (Status, error) {
	for _, in := range s.inputs() {
		if len(in.raw) > maxRawSize {
			return Fail, s.sizeError(in, len(in.raw))
		}
		if bytes.ContainsAny(in.raw, typographicQuotes) {
			return Fail, newError(ErrTypographicQuotes, "%s contains typographic quotes (“ ” ‘ ’), probably copied from a document: give it without them", in.name)
		}
		if in.pem {
			if looksBase64OfPEM(in.raw) {
				return Fail, newError(ErrBase64Twice, "%s holds base64 text, not PEM (the data was base64-encoded twice): %s", in.name, s.src.encodeFix())
			}
			in.data = in.raw
			continue
		}
		if bytes.Contains(in.raw, pemBegin) {
			return Fail, newError(ErrPEMNotBase64, "%s holds PEM text, but it must be base64-encoded: give the output of `base64 -w0 <file>`", in.name)
		}
		if len(bytes.TrimSpace(in.raw)) == 0 {
			return Fail, newError(ErrNoPEM, "%s is empty: %s", in.name, s.src.encodeFix())
		}
		data, where, err := decodeBase64(in.raw)
		if err != nil {
			return Fail, newError(ErrBase64, "%s is not valid base64 (%s): %s", in.name, where, s.src.encodeFix())
		}
		if looksBase64OfPEM(data) {
			return Fail, newError(ErrBase64Twice, "%s is base64-encoded twice: decode it once (`base64 -d`) and give the result", in.name)
		}
		in.data = data
	}
	return OK, nil
}

// checkSize: each value within cert-manager's caps.
func checkSize(s *state) (Status, error) {
	for _, in := range s.inputs() {
		if err := s.sizeError(in, len(in.data)); err != nil {
			return Fail, err
		}
	}
	return OK, nil
}

// sizeError returns an error when n bytes exceed the cap of in, else nil.
func (s *state) sizeError(in *input, n int) error {
	switch {
	case in == &s.key && n > MaxKeySize:
		return newError(ErrTooLarge, "%s is %d bytes, more than the %d bytes of the largest private key accepted (16k-bit RSA): give only the private key of the serving certificate",
			in.name, n, MaxKeySize)
	case in == &s.crt && n > MaxChainSize:
		return newError(ErrTooLarge, "%s is %d bytes, more than the %d bytes of a chain of %d large certificates: give only the serving certificate and its intermediates",
			in.name, n, MaxChainSize, MaxChainLength)
	case in == &s.ca && n > MaxChainSize:
		return newError(ErrTooLarge, "%s is %d bytes, more than the %d bytes accepted: give only the CA that issued the serving certificate",
			in.name, n, MaxChainSize)
	}
	return nil
}

// checkPEM: each value holds PEM blocks of the right type: certificates, or exactly one unencrypted key.
func checkPEM(s *state) (Status, error) {
	for _, in := range s.inputs() {
		isKey := in == &s.key
		notPEM := "is not PEM"
		if !in.pem {
			notPEM = "decodes to something that is not PEM"
		}
		if !bytes.Contains(in.data, pemBegin) {
			switch {
			case isKey && isDERKey(in.data):
				return Fail, newError(ErrDER, "%s is a DER (binary) private key, not PEM: convert it with `openssl pkey -inform der -in <key> -out <key>.pem`, then %s", in.name, s.src.encodeFix())
			case !isKey && isDERCertificate(in.data):
				return Fail, newError(ErrDER, "%s is a DER (binary) certificate, not PEM: convert it with `openssl x509 -inform der -in <certificate> -out <certificate>.pem`, then %s", in.name, s.src.encodeFix())
			}
			return Fail, newError(ErrNoPEM, `%s %s (no "-----BEGIN" line): %s`, in.name, notPEM, s.src.encodeFix())
		}
		blocks, damaged := splitPEM(in.data)
		if damaged {
			return Fail, newError(ErrPEMDamaged, `%s has a damaged PEM block after %d good ones (a "-----BEGIN" line without its "-----END" line, or invalid base64 between them): give the PEM file unchanged`, in.name, len(blocks))
		}
		var err error
		if isKey {
			in.blocks, err = s.keyBlocks(in, blocks)
		} else {
			in.blocks, err = s.certBlocks(in, blocks)
		}
		if err != nil {
			return Fail, err
		}
	}
	return OK, nil
}

func (s *state) certBlocks(in *input, blocks []*pem.Block) ([]*pem.Block, error) {
	what := "the serving certificate first, then its intermediates"
	if in == &s.ca {
		what = "the CA certificate"
	}
	for i, b := range blocks {
		switch {
		case b.Type == "CERTIFICATE":
			continue
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			return nil, newError(ErrWrongBlockType, "%s holds a private key (PEM block %d is %q) where certificates were expected: remove it, and give the private key in %s only",
				in.name, i+1, b.Type, s.key.name)
		case strings.HasSuffix(b.Type, "CERTIFICATE REQUEST"):
			return nil, newError(ErrWrongBlockType, "%s holds a certificate signing request (PEM block %d is %q), not a certificate: give the certificate your CA issued for it",
				in.name, i+1, b.Type)
		}
		return nil, newError(ErrWrongBlockType, "%s holds a PEM block of type %q (block %d) where certificates were expected: give only CERTIFICATE blocks, %s",
			in.name, b.Type, i+1, what)
	}
	if len(blocks) > MaxChainLength {
		if in == &s.ca {
			return nil, newError(ErrTooManyCertificates, "%s holds %d certificates, more than the %d accepted: give only the CA that issued the serving certificate",
				in.name, len(blocks), MaxChainLength)
		}
		return nil, newError(ErrTooManyCertificates, "%s holds %d certificates, more than the %d of a chain: give only the serving certificate and its intermediates",
			in.name, len(blocks), MaxChainLength)
	}
	return blocks, nil
}

func (s *state) keyBlocks(in *input, blocks []*pem.Block) ([]*pem.Block, error) {
	var keys []*pem.Block
	for i, b := range blocks {
		switch {
		case b.Type == "EC PARAMETERS":
			// `openssl ecparam -genkey` writes the curve before the key.
			continue
		case isEncryptedBlock(b):
			return nil, newError(ErrEncryptedKey, "%s is encrypted with a passphrase, which the registry cannot enter: decrypt it with `openssl pkey -in <key> -out <decrypted key>` and give that", in.name)
		case b.Type == "PRIVATE KEY" || b.Type == "RSA PRIVATE KEY" || b.Type == "EC PRIVATE KEY":
			keys = append(keys, b)
		case b.Type == "CERTIFICATE":
			return nil, newError(ErrWrongBlockType, "%s holds a certificate (PEM block %d) where the private key was expected: give the private key in %s and the certificate in %s (are they swapped?)",
				in.name, i+1, in.name, s.crt.name)
		case strings.HasSuffix(b.Type, "PUBLIC KEY"):
			return nil, newError(ErrWrongBlockType, "%s holds a public key (PEM block %d is %q), not the private key: give the private key the certificate was issued for",
				in.name, i+1, b.Type)
		default:
			return nil, newError(ErrWrongBlockType, "%s holds a PEM block of type %q: give an RSA, ECDSA or Ed25519 private key as PKCS#8 (\"PRIVATE KEY\"), PKCS#1 or SEC 1 PEM (`openssl pkey -in <key> -out <key>.pem` converts it)",
				in.name, b.Type)
		}
	}
	switch len(keys) {
	case 0:
		return nil, newError(ErrNoPEM, "%s holds no private key, only EC PARAMETERS: give the private key the certificate was issued for", in.name)
	case 1:
		return keys, nil
	}
	return nil, newError(ErrWrongBlockType, "%s holds %d private keys: give only the key of the serving certificate", in.name, len(keys))
}

// checkParse: every certificate and the key parse.
func checkParse(s *state) (Status, error) {
	parse := func(in *input) ([]*x509.Certificate, error) {
		var certs []*x509.Certificate
		for i, b := range in.blocks {
			name := in.name
			if len(in.blocks) > 1 {
				name = fmt.Sprintf("certificate %d of %s", i+1, in.name)
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				if isCurveError(err) {
					return nil, curveError(name, findCurve(b.Bytes))
				}
				return nil, newError(ErrParse, "%s cannot be parsed (%v): give the certificate as the CA issued it", name, err)
			}
			certs = append(certs, c)
		}
		return certs, nil
	}
	var err error
	if s.chain, err = parse(&s.crt); err != nil {
		return Fail, err
	}
	if s.ca.given {
		if s.cas, err = parse(&s.ca); err != nil {
			return Fail, err
		}
	}
	b := s.key.blocks[0]
	s.priv, err = parsePrivateKey(b)
	switch {
	case err == nil:
	case errors.Is(err, errUnsupportedKeyType):
		return Fail, newError(ErrUnsupportedKeyAlgorithm, "%s is a key of a type TLS servers cannot use (%v): use an ECDSA P-256 or RSA key", s.key.name, err)
	case isCurveError(err):
		return Fail, curveError(s.key.name, findCurve(b.Bytes))
	case strings.Contains(err.Error(), "insecure"):
		return Fail, newError(ErrRSAKeySize, "%s is an RSA key of fewer than 1024 bits, which clients refuse: use a key of %d to %d bits (`openssl genrsa 4096`) or ECDSA P-256", s.key.name, MinRSABits, MaxRSABits)
	default:
		return Fail, newError(ErrParse, "%s cannot be parsed as a private key (%v): give the PEM private key unchanged", s.key.name, err)
	}
	return OK, nil
}

func curveError(name, curve string) error {
	if curve == "" {
		curve = "an elliptic curve Go does not know"
	}
	return newError(ErrUnsupportedCurve, "%s uses the elliptic curve %s, which TLS clients do not support: use P-256, P-384 or P-521 (`openssl ecparam -name prime256v1 -genkey`)", name, curve)
}

// checkKeyAlgorithm: every certificate's key is RSA of 2048 to 8192 bits, ECDSA on P-256, P-384 or P-521, or
// Ed25519.
func checkKeyAlgorithm(s *state) (Status, error) {
	check := func(name string, c *x509.Certificate) error {
		switch k := c.PublicKey.(type) {
		case *rsa.PublicKey:
			bits := k.N.BitLen()
			if bits < MinRSABits {
				return newError(ErrRSAKeySize, "%s has a %d-bit RSA key, and clients refuse RSA keys under %d bits: use a key of %d to %d bits (`openssl genrsa 4096`) or ECDSA P-256",
					name, bits, MinRSABits, MinRSABits, MaxRSABits)
			}
			if bits > MaxRSABits {
				return newError(ErrRSAKeySize, "%s has a %d-bit RSA key, more than the %d bits TLS clients accept: use a key of %d to %d bits (`openssl genrsa 4096`) or ECDSA P-256",
					name, bits, MaxRSABits, MinRSABits, MaxRSABits)
			}
		case *ecdsa.PublicKey:
			switch k.Curve {
			case elliptic.P256(), elliptic.P384(), elliptic.P521():
			default:
				return curveError(name, k.Curve.Params().Name)
			}
		case ed25519.PublicKey:
		default:
			alg := c.PublicKeyAlgorithm.String()
			if c.PublicKeyAlgorithm == x509.UnknownPublicKeyAlgorithm {
				alg = "unknown"
			}
			return newError(ErrUnsupportedKeyAlgorithm, "%s has a key of the %s algorithm, which TLS clients do not accept: use an ECDSA P-256 or RSA key of %d to %d bits",
				name, alg, MinRSABits, MaxRSABits)
		}
		return nil
	}
	for i, c := range s.chain {
		if err := check(s.certName(i), c); err != nil {
			return Fail, err
		}
	}
	for i, c := range s.cas {
		if err := check(s.caName(i), c); err != nil {
			return Fail, err
		}
	}
	return OK, nil
}

var weakSignatures = map[x509.SignatureAlgorithm]string{
	x509.MD2WithRSA:    "MD2",
	x509.MD5WithRSA:    "MD5",
	x509.SHA1WithRSA:   "SHA-1",
	x509.DSAWithSHA1:   "SHA-1",
	x509.ECDSAWithSHA1: "SHA-1",
}

// checkSignatureAlgorithm: no certificate clients verify is signed with MD2, MD5 or SHA-1. The self-signatures
// of trust anchors are never verified, so they do not count.
func checkSignatureAlgorithm(s *state) (Status, error) {
	for i, c := range s.chain {
		if s.selfSigned(c) {
			continue
		}
		if hash, weak := weakSignatures[c.SignatureAlgorithm]; weak {
			return Fail, newError(ErrWeakSignature, "%s is signed with %s (%s), which clients reject: reissue it signed with SHA-256 (`openssl ... -sha256`)",
				s.certName(i), hash, c.SignatureAlgorithm)
		}
		if c.SignatureAlgorithm == x509.UnknownSignatureAlgorithm {
			return Fail, newError(ErrWeakSignature, "%s is signed with an algorithm clients do not know: reissue it signed with ECDSA or RSA and SHA-256", s.certName(i))
		}
	}
	return OK, nil
}

// checkKeyPair: tls.key belongs to the first certificate of tls.crt.
func checkKeyPair(s *state) (Status, error) {
	pub, ok := s.priv.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return Fail, newError(ErrUnsupportedKeyAlgorithm, "%s is a key of a type TLS servers cannot use: use an ECDSA P-256 or RSA key", s.key.name)
	}
	if pub.Equal(s.chain[0].PublicKey) {
		return OK, nil
	}
	for i, c := range s.chain[1:] {
		if pub.Equal(c.PublicKey) {
			return Fail, newError(ErrChainOrder, "%s does not start with the serving certificate: %s is the one %s belongs to; list it first, then each issuer in turn",
				s.crt.name, s.certName(i+1), s.key.name)
		}
	}
	for i, c := range s.cas {
		if pub.Equal(c.PublicKey) {
			return Fail, newError(ErrKeyMismatch, "%s is the key of the CA %s, not of the serving certificate in %s: give the serving certificate's private key",
				s.key.name, s.caName(i), s.crt.name)
		}
	}
	return Fail, newError(ErrKeyMismatch, "%s does not match the certificate in %s (%s): give the private key the certificate was issued for, or a certificate issued for this key",
		s.key.name, s.crt.name, describe(s.chain[0]))
}

// checkChainOrder: each certificate of tls.crt is followed by its issuer. It also settles which trust anchors
// the chain leads to, and whether the serving certificate is its own CA.
func checkChainOrder(s *state) (Status, error) {
	label := func(i int) string {
		if i == 0 {
			return fmt.Sprintf("the serving certificate (%s)", describe(s.chain[0]))
		}
		return s.certName(i)
	}
	for i := 0; i < len(s.chain)-1; i++ {
		child, parent := s.chain[i], s.chain[i+1]
		if s.selfSigned(child) {
			return Fail, newError(ErrChainOrder, "%s lists its certificates out of order: %s is self-signed, so nothing may follow it; list the serving certificate first, then each issuer in turn, the root last or not at all",
				s.crt.name, label(i))
		}
		if s.issuedBy(child, parent) {
			continue
		}
		for j, other := range s.chain {
			if j != i && s.issuedBy(child, other) {
				return Fail, newError(ErrChainOrder, "%s lists its certificates out of order: %s was issued by certificate %d (%s), which must come right after it; list the serving certificate first, then each issuer in turn",
					s.crt.name, label(i), j+1, describe(other))
			}
		}
		return Fail, newError(ErrUnrelatedCertificate, "%s did not issue %s: remove it from %s, or replace it with the intermediate that did (%s)",
			s.certName(i+1), label(i), s.crt.name, describeIssuer(child))
	}
	leaf := s.chain[0]
	s.ownCA = s.selfSigned(leaf) && (len(s.cas) == 0 || containsCert(s.cas, leaf))
	return OK, nil
}

// anchors are the trust anchors the chain reaches: the given CAs that issued the top of the chain or are part
// of it. Other certificates of a CA bundle (an old CA kept during a rotation) do not matter.
func (s *state) anchors() []*x509.Certificate {
	if s.anchorsDone {
		return s.anchorList
	}
	top := s.chain[len(s.chain)-1]
	for _, c := range s.trustAnchors() {
		if containsCert(s.chain, c) || s.issuedBy(top, c) {
			s.anchorList = append(s.anchorList, c)
		}
	}
	s.anchorsDone = true
	return s.anchorList
}

// checkValidity: no certificate of the chain, nor its CA, expired or not yet valid beyond the skew.
func checkValidity(s *state) (Status, error) {
	skew := s.opts.skew()
	check := func(name string, c *x509.Certificate, fix string) error {
		if s.now.After(c.NotAfter) {
			return newError(ErrExpired, "%s expired on %s (%s ago): %s", name, formatTime(c.NotAfter), humanDuration(s.now.Sub(c.NotAfter)), fix)
		}
		if c.NotBefore.After(s.now.Add(skew)) {
			return newError(ErrNotYetValid, "%s is not valid before %s (in %s): check the clock of the machine that issued it, or wait until then",
				name, formatTime(c.NotBefore), humanDuration(c.NotBefore.Sub(s.now)))
		}
		return nil
	}
	for i, c := range s.chain {
		fix := "renew it and " + s.src.replaceFix()
		if i > 0 {
			fix = "replace it with the current certificate of that CA"
		}
		if err := check(s.certName(i), c, fix); err != nil {
			return Fail, err
		}
	}
	for _, c := range s.anchors() {
		if containsCert(s.chain, c) {
			continue
		}
		i := slices.IndexFunc(s.cas, func(x *x509.Certificate) bool { return x == c })
		if err := check(s.caName(i), c, "give the CA's current certificate, and a serving certificate it issued"); err != nil {
			return Fail, err
		}
	}
	return OK, nil
}

// checkIssuersAreCAs: every intermediate and the CA have basicConstraints CA:TRUE and, when they restrict key
// usage, keyCertSign. A serving certificate that is its own CA issues nothing, so it is exempt.
func checkIssuersAreCAs(s *state) (Status, error) {
	check := func(name string, c *x509.Certificate) error {
		if !c.BasicConstraintsValid || !c.IsCA {
			return newError(ErrNotCA, "%s is not a CA certificate (basicConstraints CA:TRUE is missing), so clients reject the certificates it issued: recreate that CA with basicConstraints = critical, CA:TRUE",
				name)
		}
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return newError(ErrNoCertSign, "%s lacks the keyCertSign key usage, so clients reject the certificates it issued: recreate that CA with keyUsage = critical, keyCertSign, cRLSign",
				name)
		}
		return nil
	}
	for i := 1; i < len(s.chain); i++ {
		if err := check(s.certName(i), s.chain[i]); err != nil {
			return Fail, err
		}
	}
	for _, c := range s.anchors() {
		if containsCert(s.chain, c) {
			continue
		}
		i := slices.IndexFunc(s.cas, func(x *x509.Certificate) bool { return x == c })
		if err := check(s.caName(i), c); err != nil {
			return Fail, err
		}
	}
	return OK, nil
}

// checkLeafNotCA: the serving certificate is not a CA, unless it is self-signed and given as its own CA.
func checkLeafNotCA(s *state) (Status, error) {
	leaf := s.chain[0]
	if !leaf.BasicConstraintsValid || !leaf.IsCA || s.ownCA || s.selfSigned(leaf) {
		// A self-signed certificate with another CA given fails chain-to-ca, with a clearer message.
		return OK, nil
	}
	return Fail, newError(ErrLeafIsCA, "%s is a CA certificate (basicConstraints CA:TRUE) issued by %s, not a serving certificate: serve with a certificate that CA issues with basicConstraints CA:FALSE",
		s.crt.name, describeIssuer(leaf))
}

var extKeyUsageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:                            "any",
	x509.ExtKeyUsageServerAuth:                     "serverAuth",
	x509.ExtKeyUsageClientAuth:                     "clientAuth",
	x509.ExtKeyUsageCodeSigning:                    "codeSigning",
	x509.ExtKeyUsageEmailProtection:                "emailProtection",
	x509.ExtKeyUsageIPSECEndSystem:                 "ipsecEndSystem",
	x509.ExtKeyUsageIPSECTunnel:                    "ipsecTunnel",
	x509.ExtKeyUsageIPSECUser:                      "ipsecUser",
	x509.ExtKeyUsageTimeStamping:                   "timeStamping",
	x509.ExtKeyUsageOCSPSigning:                    "OCSPSigning",
	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     "msSGC",
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      "nsSGC",
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: "msCodeCom",
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     "msKernelCodeSigning",
}

// checkExtKeyUsage: a certificate that restricts its extended key usage includes serverAuth, along the whole
// chain, as Go's verifier and browsers require.
func checkExtKeyUsage(s *state) (Status, error) {
	restricts := func(c *x509.Certificate) (string, bool) {
		if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
			return "", false
		}
		var names []string
		for _, u := range c.ExtKeyUsage {
			if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
				return "", false
			}
			names = append(names, extKeyUsageNames[u])
		}
		for _, oid := range c.UnknownExtKeyUsage {
			names = append(names, oid.String())
		}
		return strings.Join(names, ", "), true
	}
	if names, bad := restricts(s.chain[0]); bad {
		return Fail, newError(ErrNoServerAuth, "%s allows only the extended key usages %s, not serverAuth, so clients refuse it from a server: reissue it with extendedKeyUsage = serverAuth",
			s.crt.name, names)
	}
	for i := 1; i < len(s.chain); i++ {
		if names, bad := restricts(s.chain[i]); bad {
			return Fail, newError(ErrNoServerAuth, "%s allows only the extended key usages %s, not serverAuth, so clients refuse the serving certificates it issues: use an intermediate CA without that restriction",
				s.certName(i), names)
		}
	}
	for _, c := range s.anchors() {
		if containsCert(s.chain, c) {
			continue
		}
		if names, bad := restricts(c); bad {
			i := slices.IndexFunc(s.cas, func(x *x509.Certificate) bool { return x == c })
			return Fail, newError(ErrNoServerAuth, "%s allows only the extended key usages %s, not serverAuth, so clients refuse the serving certificates it issues: use a CA without that restriction",
				s.caName(i), names)
		}
	}
	return OK, nil
}

// checkChainToCA: the chain verifies against the CA nodes will trust.
func checkChainToCA(s *state) (Status, error) {
	leaf, top := s.chain[0], s.chain[len(s.chain)-1]
	roots := x509.NewCertPool()
	for _, c := range s.trustAnchors() {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range s.chain[1:] {
		inter.AddCert(c)
	}
	// Within the skew, verify at the latest NotBefore: validity already judged the time.
	at := s.now
	for _, c := range append(slices.Clone(s.chain), s.anchors()...) {
		if at.Before(c.NotBefore) {
			at = c.NotBefore
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	var ua x509.UnknownAuthorityError
	switch {
	case err == nil:
	case errors.As(err, &ua) && s.selfSigned(leaf):
		return Fail, newError(ErrNotChained, "%s is self-signed, but %s holds %s: give the content of %s as %s too (as for a certificate made with `openssl req -x509`), or a certificate that CA issued",
			s.crt.name, s.ca.name, describeAll(s.cas), s.crt.name, s.ca.name)
	case errors.As(err, &ua):
		return Fail, newError(ErrNotChained, "%s does not lead to the CA in %s: its chain ends with %s, issued by %s, but %s holds %s; give the CA that issued it in %s, or add the missing intermediate to %s",
			s.crt.name, s.ca.name, describe(top), describeIssuer(top), s.ca.name, describeAll(s.cas), s.ca.name, s.crt.name)
	default:
		return Fail, newError(ErrNotChained, "%s does not verify against %s (%v): give a serving certificate that CA issued for server authentication",
			s.crt.name, s.ca.name, err)
	}

	if s.ownCA || s.selfSigned(top) && (len(s.cas) == 0 || containsCert(s.cas, top)) {
		return OK, nil
	}
	// Verified only because the serving certificate (or an intermediate) is itself trusted: nodes would pin it.
	if len(s.cas) == 0 {
		return Warn, newError(ErrCANotGiven, "%s is empty, so nodes will trust %s itself, and must be given the new one at every renewal: give the CA that issued it (%s) in %s",
			s.ca.name, s.crt.name, describeIssuer(top), s.ca.name)
	}
	for _, c := range s.cas {
		if containsCert(s.chain, c) {
			return Warn, newError(ErrCANotGiven, "%s holds %s from %s rather than the CA that issued it (%s), so nodes must be given the new one at every renewal: give that CA in %s",
				s.ca.name, describe(c), s.crt.name, describeIssuer(top), s.ca.name)
		}
	}
	return OK, nil
}

func describeAll(certs []*x509.Certificate) string {
	names := make([]string, 0, len(certs))
	for _, c := range certs {
		names = append(names, describe(c))
	}
	return strings.Join(names, ", ")
}

// checkSANs: the serving certificate holds the ClusterIP as an IP SAN, and (a warning) one of the Service's DNS
// names.
func checkSANs(s *state) (Status, error) {
	leaf := s.chain[0]
	want := s.sanHint()
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) == 0 {
		cn := ""
		if leaf.Subject.CommonName != "" {
			cn = fmt.Sprintf(", and clients ignore its common name %q", leaf.Subject.CommonName)
		}
		return Fail, newError(ErrNoSANs, "%s has no subject alternative names%s: reissue it with -addext \"subjectAltName = %s\"", s.crt.name, cn, want)
	}
	if ip := s.opts.ClusterIP; ip.IsValid() {
		found := slices.ContainsFunc(leaf.IPAddresses, func(a net.IP) bool {
			addr, ok := netip.AddrFromSlice(a)
			return ok && addr.Unmap() == ip.Unmap()
		})
		if !found {
			if slices.Contains(leaf.DNSNames, ip.String()) {
				return Fail, newError(ErrIPAsDNS, "%s holds the ClusterIP %s as a DNS name (DNS:%s), which clients never match against an address: reissue it with -addext \"subjectAltName = %s\"",
					s.crt.name, ip, ip, want)
			}
			alt := ""
			if len(leaf.IPAddresses) > 0 {
				alt = ", or set service.clusterIP to an address it holds"
			}
			return Fail, newError(ErrClusterIPMissing, "%s does not hold the ClusterIP %s in its subject alternative names (it holds %s), so nodes pulling from %s reject it: reissue it with -addext \"subjectAltName = %s\"%s",
				s.crt.name, ip, describeSANs(leaf), netip.AddrPortFrom(ip, 443), want, alt)
		}
	}
	for _, n := range leaf.DNSNames {
		if addr, err := netip.ParseAddr(n); err == nil {
			return Warn, newError(ErrIPAsDNS, "%s holds %s as a DNS name, which clients never match against an address: write it as IP:%s when it is next issued", s.crt.name, n, addr)
		}
	}
	if len(s.opts.DNSNames) > 0 && !slices.ContainsFunc(s.opts.DNSNames, func(n string) bool { return leaf.VerifyHostname(n) == nil }) {
		return Warn, newError(ErrDNSNameMissing, "%s holds none of the Service's DNS names (%s), so clients that reach the registry by name reject it (nodes use the ClusterIP and are fine): add DNS:%s to its subject alternative names when it is next issued",
			s.crt.name, strings.Join(s.opts.DNSNames, ", "), s.svcName())
	}
	return OK, nil
}

// sanHint is the subjectAltName a certificate for this registry needs.
func (s *state) sanHint() string {
	var parts []string
	if s.opts.ClusterIP.IsValid() {
		parts = append(parts, "IP:"+s.opts.ClusterIP.String())
	}
	for _, n := range s.opts.DNSNames {
		parts = append(parts, "DNS:"+n)
	}
	if len(parts) == 0 {
		return "IP:<service.clusterIP>"
	}
	return strings.Join(parts, ",")
}

// svcName is the <service>.<namespace>.svc name, or the first DNS name.
func (s *state) svcName() string {
	for _, n := range s.opts.DNSNames {
		if strings.HasSuffix(n, ".svc") {
			return n
		}
	}
	return s.opts.DNSNames[0]
}

func describeSANs(c *x509.Certificate) string {
	var parts []string
	for _, ip := range c.IPAddresses {
		parts = append(parts, "IP:"+ip.String())
	}
	for _, n := range c.DNSNames {
		parts = append(parts, "DNS:"+printable(n))
	}
	for _, u := range c.URIs {
		parts = append(parts, "URI:"+printable(u.String()))
	}
	for _, e := range c.EmailAddresses {
		parts = append(parts, "email:"+printable(e))
	}
	if len(parts) > 4 {
		parts = append(parts[:4], fmt.Sprintf("and %d more", len(parts)-4))
	}
	return strings.Join(parts, ", ")
}

// checkRenewal warns when the serving certificate is in the last third of its lifetime, where cert-manager and
// our certgen renew.
func checkRenewal(s *state) (Status, error) {
	leaf := s.chain[0]
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	renewAt := leaf.NotBefore.Add(life - life/3)
	if s.now.Before(renewAt) {
		return OK, nil
	}
	return Warn, newError(ErrRenewalWindow, "%s expires on %s (in %s), within the last third of its lifetime: renew it soon and %s",
		s.crt.name, formatTime(leaf.NotAfter), humanDuration(leaf.NotAfter.Sub(s.now)), s.src.replaceFix())
}
