package app

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/connected-registry/connected-registry/internal/certgen"
	"github.com/connected-registry/connected-registry/internal/certs"
)

// minDuration is the shortest lifetime --duration accepts for a serving certificate: 1h.
const minDuration = time.Hour

// CertgenOptions generates the registry's CA and serving certificate into kubernetes.io/tls Secrets (package
// certgen).
type CertgenOptions struct {
	KubeOptions
	// Secret receives the serving certificate; CASecret keeps the CA. Empty CASecret is Secret + "-ca".
	Secret, CASecret string
	// IPs and DNSNames are the serving certificate's SANs.
	IPs, DNSNames []string
	// KeyAlgorithm and KeySize of new keys: ECDSA 256 (default) or 384, RSA 2048, 3072 or 4096.
	KeyAlgorithm string
	KeySize      int
	// Duration of a serving certificate and CADuration of a new CA.
	Duration, CADuration time.Duration

	ips  []netip.Addr
	spec certs.KeySpec
}

// AddFlags registers the flags; the chart's certgen Job passes them as args.
func (o *CertgenOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "CERTGEN", jobTimeoutHelp)
	fs.StringVar(&o.Secret, "secret", "CONNECTED_REGISTRY_CERTGEN_SECRET", "",
		"name of the kubernetes.io/tls Secret to write tls.crt, tls.key and ca.crt into (required)")
	fs.StringVar(&o.CASecret, "ca-secret", "CONNECTED_REGISTRY_CERTGEN_CA_SECRET", "",
		"name of the kubernetes.io/tls Secret that keeps the CA's certificate and key (default: --secret with -ca appended)")
	fs.ListVar(&o.IPs, "ip", "CONNECTED_REGISTRY_CERTGEN_IP", nil,
		"IP address SANs of the serving certificate, comma-separated or repeated: the Service's ClusterIP")
	fs.ListVar(&o.DNSNames, "dns", "CONNECTED_REGISTRY_CERTGEN_DNS", nil,
		"DNS name SANs of the serving certificate, comma-separated or repeated: the Service's names")
	fs.StringVar(&o.KeyAlgorithm, "key-algorithm", "CONNECTED_REGISTRY_CERTGEN_KEY_ALGORITHM", certs.ECDSA,
		"algorithm of new keys: ECDSA or RSA")
	fs.IntVar(&o.KeySize, "key-size", "CONNECTED_REGISTRY_CERTGEN_KEY_SIZE", 0,
		"size of new keys in bits: 256 or 384 for ECDSA, 2048, 3072 or 4096 for RSA; 0 is 256 for ECDSA and 2048 for RSA")
	fs.DurationVar(&o.Duration, "duration", "CONNECTED_REGISTRY_CERTGEN_DURATION", certs.DefaultLeafDuration,
		"lifetime of a serving certificate (Go duration; 2160h is 90 days); it is reissued after two thirds of it")
	fs.DurationVar(&o.CADuration, "ca-duration", "CONNECTED_REGISTRY_CERTGEN_CA_DURATION", certs.DefaultCADuration,
		"lifetime of a new CA (Go duration; 87600h is 10 years); the CA is kept until it cannot cover a new serving certificate")
}

// Complete validates the options and builds the API client.
func (o *CertgenOptions) Complete() error {
	if o.Secret == "" {
		return usageErrorf("--secret is required: the kubernetes.io/tls Secret the registry mounts, like cr-connected-registry-tls")
	}
	if o.CASecret == "" {
		o.CASecret = o.Secret + "-ca"
	}
	for _, name := range []string{o.Secret, o.CASecret} {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return usageErrorf("Secret name %q is invalid: %s", name, strings.Join(errs, "; "))
		}
	}
	if o.Secret == o.CASecret {
		return usageErrorf("--ca-secret must differ from --secret %q: the registry must not mount the CA's key", o.Secret)
	}
	o.ips = nil
	for _, s := range o.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return usageErrorf("--ip %q is not an IP address", s)
		}
		o.ips = append(o.ips, ip.Unmap())
	}
	for _, n := range o.DNSNames {
		if errs := validation.IsDNS1123Subdomain(strings.TrimPrefix(strings.ToLower(n), "*.")); len(errs) > 0 {
			return usageErrorf("--dns %q is not a DNS name: %s", n, strings.Join(errs, "; "))
		}
	}
	if len(o.ips) == 0 && len(o.DNSNames) == 0 {
		return usageErrorf("give at least one --ip (the Service's ClusterIP) or --dns name for the serving certificate")
	}
	var err error
	if o.spec, err = certs.ParseKeySpec(o.KeyAlgorithm, o.KeySize); err != nil {
		return &UsageError{Err: fmt.Errorf("--key-algorithm %s --key-size %d: %w", o.KeyAlgorithm, o.KeySize, err)}
	}
	if o.Duration < minDuration {
		return usageErrorf("--duration %s is too short: a serving certificate lives at least 1h", o.Duration)
	}
	if o.CADuration < 2*o.Duration {
		return usageErrorf("--ca-duration %s must be at least twice --duration %s, so the CA outlives many serving certificates", o.CADuration, o.Duration)
	}
	return o.complete()
}

// Run generates what is missing or due and writes what changed, one line each.
func (o *CertgenOptions) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	g := &certgen.Generator{
		Client: o.Client, Namespace: o.Namespace, Secret: o.Secret, CASecret: o.CASecret,
		IPs: o.ips, DNSNames: o.DNSNames, Key: o.spec, Duration: o.Duration, CADuration: o.CADuration,
	}
	return g.Run(ctx, out)
}
