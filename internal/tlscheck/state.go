package tlscheck

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strconv"
	"time"
	"unicode"
)

// source phrases the fixes that depend on where the material comes from.
type source interface {
	// encodeFix tells how to give a value in the right encoding.
	encodeFix() string
	// replaceFix tells how to put a renewed or reissued certificate in place.
	replaceFix() string
}

type valuesSource struct{}

func (valuesSource) encodeFix() string {
	return "give the output of `base64 -w0 <file>` of the PEM file"
}

func (valuesSource) replaceFix() string {
	return "give the new certificate and key in tls.crt and tls.key"
}

type secretSource struct{ namespace, name string }

func (s secretSource) ref() string { return s.namespace + "/" + s.name }

func (s secretSource) keyName(key string) string { return "Secret " + s.ref() + " key " + key }

func (s secretSource) createCommand() string {
	return fmt.Sprintf("kubectl -n %s create secret generic %s --type=%s --from-file=%s=<certificate chain PEM> --from-file=%s=<key PEM> --from-file=%s=<CA PEM>",
		s.namespace, s.name, SecretTypeTLS, KeyTLSCrt, KeyTLSKey, KeyCACrt)
}

func (s secretSource) encodeFix() string {
	return "recreate the Secret from the PEM files: " + s.createCommand()
}

func (s secretSource) replaceFix() string {
	return "put the new certificate and key in the Secret " + s.ref()
}

// input is one value: tls.crt, tls.key or the CA.
type input struct {
	name  string // as users know it
	raw   []byte // as given
	given bool   // false for an empty tls.cacrt
	pem   bool   // raw is PEM already (Secret data), not base64 of PEM
	data  []byte // the PEM, once decoded
	// blocks are the PEM blocks that matter: certificates, or the one private key.
	blocks []*pem.Block
}

// state is what the checks share; each check reads what earlier ones filled in.
type state struct {
	opts   Options
	now    time.Time
	src    source
	secret *Secret

	crt, key, ca input

	chain []*x509.Certificate // tls.crt: the serving certificate first
	cas   []*x509.Certificate // tls.cacrt or ca.crt; empty when not given
	priv  crypto.Signer

	// ownCA is set when the serving certificate is self-signed and is its own CA: exactly what
	// `openssl req -x509` makes.
	ownCA bool

	// Memos: signature checks are the costly part of the chain.
	issued      map[[2]*x509.Certificate]bool
	anchorList  []*x509.Certificate
	anchorsDone bool
}

// issuedBy is the package's issuedBy, computed once per pair.
func (s *state) issuedBy(child, parent *x509.Certificate) bool {
	key := [2]*x509.Certificate{child, parent}
	if v, ok := s.issued[key]; ok {
		return v
	}
	if s.issued == nil {
		s.issued = map[[2]*x509.Certificate]bool{}
	}
	v := issuedBy(child, parent)
	s.issued[key] = v
	return v
}

func (s *state) selfSigned(c *x509.Certificate) bool { return s.issuedBy(c, c) }

func newState(opts Options, src source) *state {
	return &state{opts: opts, now: opts.now(), src: src}
}

func (s *state) inputs() []*input {
	if s.ca.given {
		return []*input{&s.crt, &s.key, &s.ca}
	}
	return []*input{&s.crt, &s.key}
}

// certName names certificate i of tls.crt: the value's name for the serving certificate, else its position
// and subject.
func (s *state) certName(i int) string {
	if i == 0 {
		return s.crt.name
	}
	return fmt.Sprintf("certificate %d of %s (%s)", i+1, s.crt.name, describe(s.chain[i]))
}

// caName names certificate i of the CA bundle.
func (s *state) caName(i int) string {
	if len(s.cas) == 1 {
		return fmt.Sprintf("%s (%s)", s.ca.name, describe(s.cas[i]))
	}
	return fmt.Sprintf("certificate %d of %s (%s)", i+1, s.ca.name, describe(s.cas[i]))
}

// trustAnchors are what nodes will trust: the CA bundle, or tls.crt itself when no CA is given (the chart then
// writes tls.crt as ca.crt).
func (s *state) trustAnchors() []*x509.Certificate {
	if len(s.cas) > 0 {
		return s.cas
	}
	return s.chain
}

// describe names a certificate by its subject's common name, else its whole subject, else its serial number.
func describe(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return "CN=" + printable(c.Subject.CommonName)
	}
	if s := c.Subject.String(); s != "" {
		return printable(s)
	}
	return "serial " + c.SerialNumber.String()
}

// describeIssuer names a certificate's issuer the same way.
func describeIssuer(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return "CN=" + printable(c.Issuer.CommonName)
	}
	if s := c.Issuer.String(); s != "" {
		return printable(s)
	}
	return "an empty issuer name"
}

// printable keeps text from a certificate on one line: quoted, with escapes, when it holds anything but
// printable characters.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// humanDuration rounds d for a sentence: days, hours, minutes or seconds.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 48*time.Hour:
		return plural(int64(d/(24*time.Hour)), "day")
	case d >= 2*time.Hour:
		return plural(int64(d/time.Hour), "hour")
	case d >= 2*time.Minute:
		return plural(int64(d/time.Minute), "minute")
	}
	return plural(int64(d/time.Second), "second")
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
