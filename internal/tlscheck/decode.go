package tlscheck

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// base64PEMPrefix is base64 of "-----BEGIN": the start of a value encoded once too often.
const base64PEMPrefix = "LS0tLS1CRUdJTi"

var pemBegin = []byte("-----BEGIN")

// typographicQuotes are what word processors and web pages put for ASCII quotes.
const typographicQuotes = "“”‘’„‚‟‛«»‹›＂＇″"

func looksBase64OfPEM(b []byte) bool {
	return bytes.HasPrefix(bytes.TrimSpace(b), []byte(base64PEMPrefix))
}

func isBase64Space(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// decodeBase64 decodes standard, padded base64 with whitespace anywhere (as `base64` wraps it). On error it
// describes the problem at a 1-based character position of raw.
func decodeBase64(raw []byte) ([]byte, string, error) {
	stripped := make([]byte, 0, len(raw))
	for _, c := range raw {
		if !isBase64Space(c) {
			stripped = append(stripped, c)
		}
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(stripped)))
	n, err := base64.StdEncoding.Decode(out, stripped)
	if err == nil {
		return out[:n], "", nil
	}
	// The slow path, only to say where: positions maps stripped offsets back to raw.
	positions := make([]int, 0, len(stripped))
	for i, c := range raw {
		if !isBase64Space(c) {
			positions = append(positions, i+1)
		}
	}
	for i, c := range stripped {
		if !isBase64Char(c) {
			what := fmt.Sprintf("%q", rune(c))
			if c >= 0x80 {
				what = "a non-ASCII byte"
			}
			return nil, fmt.Sprintf("%s at character %d is not a base64 character", what, positions[i]), err
		}
	}
	if len(stripped)%4 != 0 {
		return nil, "it ends early or lacks its '=' padding", err
	}
	var ce base64.CorruptInputError
	if errors.As(err, &ce) && int(ce) < len(positions) {
		return nil, fmt.Sprintf("%q at character %d is misplaced", rune(stripped[ce]), positions[ce]), err
	}
	return nil, err.Error(), err
}

func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

// splitPEM returns the PEM blocks of data and whether a "-----BEGIN" line is left over that did not decode.
func splitPEM(data []byte) (blocks []*pem.Block, damaged bool) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	return blocks, bytes.Contains(rest, pemBegin)
}

func isEncryptedBlock(b *pem.Block) bool {
	return b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED")
}

// parsePrivateKey parses a PKCS#8, PKCS#1 or SEC 1 key, trying the block's own format first, as
// tls.X509KeyPair does.
func parsePrivateKey(b *pem.Block) (crypto.Signer, error) {
	var firstErr error
	parsers := []func([]byte) (any, error){
		func(d []byte) (any, error) { return x509.ParsePKCS8PrivateKey(d) },
		func(d []byte) (any, error) { return x509.ParsePKCS1PrivateKey(d) },
		func(d []byte) (any, error) { return x509.ParseECPrivateKey(d) },
	}
	switch b.Type {
	case "RSA PRIVATE KEY":
		parsers[0], parsers[1] = parsers[1], parsers[0]
	case "EC PRIVATE KEY":
		parsers[0], parsers[2] = parsers[2], parsers[0]
	}
	for _, p := range parsers {
		k, err := p(b.Bytes)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("%w: %T", errUnsupportedKeyType, k)
	}
	return nil, firstErr
}

var errUnsupportedKeyType = errors.New("unsupported key type")

// isDERCertificate and isDERKey recognise binary input given where PEM was expected.
func isDERCertificate(b []byte) bool {
	_, err := x509.ParseCertificate(b)
	return err == nil
}

func isDERKey(b []byte) bool {
	_, err := parsePrivateKey(&pem.Block{Bytes: b})
	return err == nil
}

// curveNames names the curves users meet that Go and TLS do not support, by the DER of their OID.
var curveNames = map[string]string{
	"1.3.132.0.10":          "secp256k1",
	"1.2.840.10045.3.1.1":   "P-192",
	"1.3.132.0.33":          "P-224",
	"1.3.36.3.3.2.8.1.1.7":  "brainpoolP256r1",
	"1.3.36.3.3.2.8.1.1.11": "brainpoolP384r1",
	"1.3.36.3.3.2.8.1.1.13": "brainpoolP512r1",
	"1.3.132.0.31":          "secp192k1",
	"1.3.132.0.32":          "secp224k1",
	"1.2.156.10197.1.301":   "SM2",
}

// curveOIDs holds the DER encoding of each OID of curveNames.
var curveOIDs = func() map[string]string {
	m := make(map[string]string, len(curveNames))
	for oid, name := range curveNames {
		enc, err := asn1.Marshal(mustOID(oid))
		if err != nil {
			panic(err)
		}
		m[string(enc)] = name
	}
	return m
}()

// findCurve names the unsupported curve whose OID appears in der, or "".
func findCurve(der []byte) string {
	for enc, name := range curveOIDs {
		if bytes.Contains(der, []byte(enc)) {
			return name
		}
	}
	return ""
}

func mustOID(s string) asn1.ObjectIdentifier {
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(s, ".") {
		n := 0
		for _, c := range part {
			n = n*10 + int(c-'0')
		}
		oid = append(oid, n)
	}
	return oid
}

func isCurveError(err error) bool {
	return err != nil && strings.Contains(err.Error(), "elliptic curve")
}

// issuedBy reports whether parent's key signed child and parent's subject is child's issuer. It does not
// require parent to be a CA: that is a separate check with its own message.
func issuedBy(child, parent *x509.Certificate) bool {
	if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
		return false
	}
	return parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature) == nil
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}
