// Package tlscheck validates the registry's TLS material before anything is installed: a serving certificate
// (optionally followed by its intermediates), its private key and the CA nodes will trust, given either as Helm
// values (base64 of PEM: tls.crt, tls.key, tls.cacrt) or as an existing kubernetes.io/tls Secret (PEM under
// tls.crt, tls.key, ca.crt).
//
// Validation is a chain of small named checks. Each returns ok, warn or fail with one sentence that names the
// value (tls.crt, or "Secret <ns>/<name> key tls.crt") and the fix. The chain stops at the first failure; warnings
// are collected. Time comes from an injected Clock, so tests can move it.
//
// Inputs are capped as cert-manager caps them: a private key at most 13,000 bytes, a chain at most 10
// certificates of at most 6,500 bytes each.
package tlscheck

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/connected-registry/connected-registry/internal/clock"
)

// Size caps, as cert-manager's internal/pem.
const (
	// MaxKeySize is the largest PEM private key accepted, in bytes: a 16k-bit RSA key.
	MaxKeySize = 13000
	// MaxCertificateSize is the largest PEM certificate expected, in bytes.
	MaxCertificateSize = 6500
	// MaxChainLength is the most certificates tls.crt (or the CA bundle) may hold.
	MaxChainLength = 10
	// MaxChainSize is the largest PEM chain or CA bundle accepted, in bytes.
	MaxChainSize = MaxChainLength * MaxCertificateSize
	// maxRawSize bounds any raw input before it is decoded at all.
	maxRawSize = 4 * MaxChainSize
)

// Key sizes TLS clients accept. Go's TLS client refuses RSA keys above 8192 bits.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// DefaultSkew is how far in the future a certificate's NotBefore may lie before it counts as not yet valid.
const DefaultSkew = 5 * time.Minute

// Status is the verdict of one check.
type Status int

// Verdicts, from best to worst.
const (
	OK Status = iota
	Warn
	Fail
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Sentinel errors, one per kind of problem, for errors.Is on Result.Err. The messages users see are built
// around them and name the value and the fix.
var (
	ErrSecretMissing           = errors.New("secret does not exist")
	ErrSecretType              = errors.New("secret is not of type kubernetes.io/tls")
	ErrSecretKeyMissing        = errors.New("secret lacks a key")
	ErrTypographicQuotes       = errors.New("typographic quotes")
	ErrTooLarge                = errors.New("input is too large")
	ErrTooManyCertificates     = errors.New("too many certificates")
	ErrPEMNotBase64            = errors.New("PEM text given where base64 was expected")
	ErrBase64                  = errors.New("invalid base64")
	ErrBase64Twice             = errors.New("base64-encoded twice")
	ErrNoPEM                   = errors.New("no PEM block")
	ErrDER                     = errors.New("DER given where PEM was expected")
	ErrPEMDamaged              = errors.New("damaged PEM block")
	ErrWrongBlockType          = errors.New("wrong PEM block type")
	ErrEncryptedKey            = errors.New("encrypted private key")
	ErrParse                   = errors.New("cannot be parsed")
	ErrUnsupportedKeyAlgorithm = errors.New("unsupported key algorithm")
	ErrUnsupportedCurve        = errors.New("unsupported elliptic curve")
	ErrRSAKeySize              = errors.New("RSA key size out of range")
	ErrWeakSignature           = errors.New("weak signature algorithm")
	ErrKeyMismatch             = errors.New("key does not match certificate")
	ErrChainOrder              = errors.New("chain out of order")
	ErrUnrelatedCertificate    = errors.New("certificate in the chain issued nothing")
	ErrExpired                 = errors.New("certificate expired")
	ErrNotYetValid             = errors.New("certificate not yet valid")
	ErrNotCA                   = errors.New("issuer is not a CA")
	ErrNoCertSign              = errors.New("CA lacks keyCertSign")
	ErrLeafIsCA                = errors.New("serving certificate is a CA")
	ErrNotChained              = errors.New("chain does not lead to the CA")
	ErrCANotGiven              = errors.New("the CA that issued the certificate is not given")
	ErrNoServerAuth            = errors.New("extended key usage lacks serverAuth")
	ErrNoSANs                  = errors.New("no subject alternative names")
	ErrIPAsDNS                 = errors.New("IP address written as a DNS name")
	ErrClusterIPMissing        = errors.New("ClusterIP missing from the SANs")
	ErrDNSNameMissing          = errors.New("Service DNS names missing from the SANs")
	ErrRenewalWindow           = errors.New("inside the renewal window")
)

// Error is a verdict's message; Kind is one of the sentinels above.
type Error struct {
	Kind error
	msg  string
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Kind }

func newError(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Result is the verdict of one named check. Err is nil exactly when Status is OK.
type Result struct {
	Check  string
	Status Status
	Err    error
}

// Message is the verdict's sentence, empty for ok.
func (r Result) Message() string {
	if r.Err == nil {
		return ""
	}
	return r.Err.Error()
}

func (r Result) String() string {
	if r.Err == nil {
		return r.Check + ": " + r.Status.String()
	}
	return r.Check + ": " + r.Status.String() + ": " + r.Err.Error()
}

// Report holds the verdict of every check that ran, in order. The chain stops at the first failure.
type Report struct {
	Results []Result
	// Certificate is the serving certificate, once it parsed.
	Certificate *x509.Certificate
}

// Status is the worst verdict.
func (r Report) Status() Status {
	s := OK
	for _, res := range r.Results {
		s = max(s, res.Status)
	}
	return s
}

// Err returns the failure, or nil.
func (r Report) Err() error {
	for _, res := range r.Results {
		if res.Status == Fail {
			return res.Err
		}
	}
	return nil
}

// Problems returns the results that are not ok, in order.
func (r Report) Problems() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Status != OK {
			out = append(out, res)
		}
	}
	return out
}

// Summary is one line: the failure, else the warnings joined by "; ", else empty.
func (r Report) Summary() string {
	if err := r.Err(); err != nil {
		return err.Error()
	}
	var msgs []string
	for _, p := range r.Problems() {
		msgs = append(msgs, p.Message())
	}
	return strings.Join(msgs, "; ")
}

// Clock tells the time (package clock).
type Clock = clock.Clock

// Options are what the material is checked against.
type Options struct {
	// ClusterIP is service.clusterIP; the certificate must hold it as an IP SAN. Unset skips the check.
	ClusterIP netip.Addr
	// DNSNames are the Service's DNS names; a certificate holding none of them gets a warning.
	DNSNames []string
	// Clock defaults to the real time.
	Clock Clock
	// Skew is how far NotBefore may lie in the future; zero means DefaultSkew.
	Skew time.Duration
}

func (o Options) now() time.Time { return clock.Or(o.Clock).Now() }

func (o Options) skew() time.Duration {
	if o.Skew <= 0 {
		return DefaultSkew
	}
	return o.Skew
}

// Value names, as users give them.
const (
	ValueCrt   = "tls.crt"
	ValueKey   = "tls.key"
	ValueCACrt = "tls.cacrt"
)

// Secret keys of a kubernetes.io/tls Secret.
const (
	SecretTypeTLS = "kubernetes.io/tls"
	KeyTLSCrt     = "tls.crt"
	KeyTLSKey     = "tls.key"
	KeyCACrt      = "ca.crt"
)

// CheckValues checks the Helm values tls.crt, tls.key and tls.cacrt: base64 of PEM, whitespace allowed. An empty
// cacrt means, as in the chart, that tls.crt itself is what nodes trust.
func CheckValues(crt, key, cacrt string, opts Options) Report {
	s := newState(opts, valuesSource{})
	s.crt = input{name: ValueCrt, raw: []byte(crt), given: true}
	s.key = input{name: ValueKey, raw: []byte(key), given: true}
	s.ca = input{name: ValueCACrt, raw: []byte(cacrt), given: strings.TrimSpace(cacrt) != ""}
	return run(s, materialChecks)
}

// Secret is an existing Secret as read from the API server.
type Secret struct {
	Namespace, Name string
	// Found is false when the Secret does not exist.
	Found bool
	Type  string
	Data  map[string][]byte
}

// CheckSecret checks an existing kubernetes.io/tls Secret with PEM under tls.crt, tls.key and ca.crt.
func CheckSecret(sec Secret, opts Options) Report {
	src := secretSource{namespace: sec.Namespace, name: sec.Name}
	s := newState(opts, src)
	s.secret = &sec
	s.crt = input{name: src.keyName(KeyTLSCrt), raw: sec.Data[KeyTLSCrt], given: true, pem: true}
	s.key = input{name: src.keyName(KeyTLSKey), raw: sec.Data[KeyTLSKey], given: true, pem: true}
	s.ca = input{name: src.keyName(KeyCACrt), raw: sec.Data[KeyCACrt], given: true, pem: true}
	return run(s, append([]check{{"secret", checkSecretShape}}, materialChecks...))
}

// check is one named link of the chain.
type check struct {
	name string
	fn   func(*state) (Status, error)
}

// materialChecks is the chain, in the order users should fix things: the encoding, then what each value is,
// then how they fit together, then how clients will see the result.
var materialChecks = []check{
	{"encoding", checkEncoding},
	{"size", checkSize},
	{"pem", checkPEM},
	{"parse", checkParse},
	{"key-algorithm", checkKeyAlgorithm},
	{"signature-algorithm", checkSignatureAlgorithm},
	{"key-pair", checkKeyPair},
	{"chain-order", checkChainOrder},
	{"validity", checkValidity},
	{"issuer-ca", checkIssuersAreCAs},
	{"leaf-ca", checkLeafNotCA},
	{"extended-key-usage", checkExtKeyUsage},
	{"chain-to-ca", checkChainToCA},
	{"subject-alternative-names", checkSANs},
	{"renewal", checkRenewal},
}

// CheckNames lists the checks of CheckValues in order; CheckSecret runs "secret" first.
func CheckNames() []string {
	names := make([]string, 0, len(materialChecks))
	for _, c := range materialChecks {
		names = append(names, c.name)
	}
	return names
}

func run(s *state, checks []check) Report {
	var r Report
	for _, c := range checks {
		st, err := c.fn(s)
		if err == nil {
			st = OK
		} else if st == OK {
			st = Fail
		}
		r.Results = append(r.Results, Result{Check: c.name, Status: st, Err: err})
		if st == Fail {
			break
		}
	}
	if len(s.chain) > 0 {
		r.Certificate = s.chain[0]
	}
	return r
}
