package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/connected-registry/connected-registry/internal/certs"
)

// Labels on the Secrets certgen writes. They are not Helm's: the Secrets outlive upgrades, and the chart's
// post-delete cleanup removes what carries them.
const (
	LabelPartOf      = "app.kubernetes.io/part-of"
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	LabelComponent   = "app.kubernetes.io/component"
	PartOf           = "connected-registry"
	CertgenManagedBy = "connected-registry-certgen"
	// helmKeep stops Helm from deleting a Secret it used to manage (tls.crt given before) when certgen takes it
	// over on upgrade.
	helmKeep = "helm.sh/resource-policy"
)

// ErrForeignSecret is returned when the Secret to write exists and belongs to someone else.
var ErrForeignSecret = errors.New("the Secret exists and was not made by certgen")

// CertgenOptions generates the registry's CA and serving certificate into kubernetes.io/tls Secrets, keeping
// what is still right: the CA while it can issue a full-length serving certificate, the serving certificate
// while it holds the current names and key, was issued by the current CA and is before two thirds of its life.
type CertgenOptions struct {
	KubeOptions
	// Secret receives the serving certificate: tls.crt, tls.key and ca.crt. The registry mounts it.
	Secret string
	// CASecret keeps the CA's certificate and key; the registry never mounts it. Empty is Secret + "-ca".
	CASecret string
	// IPs and DNSNames are the serving certificate's SANs.
	IPs      []string
	DNSNames []string
	// KeyAlgorithm and KeySize of new keys: ECDSA 256 (default) or 384, RSA 2048, 3072 or 4096.
	KeyAlgorithm string
	KeySize      int
	// Duration of a serving certificate; it is reissued after two thirds of it.
	Duration time.Duration
	// CADuration of a new CA.
	CADuration time.Duration
	// Rand defaults to crypto/rand.
	Rand io.Reader

	ips  []netip.Addr
	spec certs.KeySpec
}

// AddFlags registers the flags; the chart's certgen Job passes them as args.
func (o *CertgenOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "CERTGEN")
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
	if o.Duration < time.Hour {
		return usageErrorf("--duration %s is too short: a serving certificate lives at least 1h", o.Duration)
	}
	if o.CADuration < 2*o.Duration {
		return usageErrorf("--ca-duration %s must be at least twice --duration %s, so the CA outlives many serving certificates", o.CADuration, o.Duration)
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return o.complete("certgen")
}

func (o *CertgenOptions) leafRequest() certs.Request {
	return certs.Request{IPs: o.ips, DNSNames: o.DNSNames, Key: o.spec, Duration: o.Duration}
}

// Run reads both Secrets, keeps or regenerates the CA, keeps or reissues the serving certificate, and writes
// only what changed. It prints one line for the CA, one for the serving certificate and one per Secret.
func (o *CertgenOptions) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	now := o.Clock.Now()

	caSecret, err := o.get(ctx, o.CASecret)
	if err != nil {
		return err
	}
	if caSecret != nil && !ownedByCertgen(caSecret) {
		return fmt.Errorf("%w: Secret %s/%s has no label %s=%s; delete it, or give --ca-secret another name",
			ErrForeignSecret, o.Namespace, o.CASecret, LabelManagedBy, CertgenManagedBy)
	}
	ca, why := o.loadCA(caSecret, now)
	caChanged := ca == nil
	if ca == nil {
		if ca, err = certs.NewCA(o.Rand, o.caRequest(), now); err != nil {
			return err
		}
		fmt.Fprintf(out, "CA: generated %s, valid until %s: %s\n", describeCert(ca), ca.Cert.NotAfter.UTC().Format(time.RFC3339), why)
	} else {
		fmt.Fprintf(out, "CA: kept %s, valid until %s\n", describeCert(ca), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}

	serving, err := o.get(ctx, o.Secret)
	if err != nil {
		return err
	}
	takeover := ""
	if serving != nil && !ownedByCertgen(serving) {
		if takeover = formerOwner(serving); takeover == "" {
			return fmt.Errorf("%w: Secret %s/%s has no label %s=%s and was not made by Helm or cert-manager; delete it to let certgen write it, or name it in tls.secret to serve it as it is",
				ErrForeignSecret, o.Namespace, o.Secret, LabelManagedBy, CertgenManagedBy)
		}
		if serving.Type != corev1.SecretTypeTLS {
			return fmt.Errorf("%w: Secret %s/%s is of type %s, not %s; delete it to let certgen write it",
				ErrForeignSecret, o.Namespace, o.Secret, serving.Type, corev1.SecretTypeTLS)
		}
	}
	leaf, why := o.loadLeaf(serving, ca, now)
	if leaf == nil {
		if leaf, err = certs.Issue(o.Rand, ca, o.leafRequest(), now); err != nil {
			return err
		}
		fmt.Fprintf(out, "serving certificate: issued for %s, valid until %s, renewed from %s: %s\n",
			certs.SANs(leaf.Cert), leaf.Cert.NotAfter.UTC().Format(time.RFC3339), certs.RenewalTime(leaf.Cert).UTC().Format(time.RFC3339), why)
	} else {
		fmt.Fprintf(out, "serving certificate: kept for %s, valid until %s, renewed from %s\n",
			certs.SANs(leaf.Cert), leaf.Cert.NotAfter.UTC().Format(time.RFC3339), certs.RenewalTime(leaf.Cert).UTC().Format(time.RFC3339))
	}

	// The CA first: a serving certificate must never be written without the CA key that issued it kept.
	caData := map[string][]byte{corev1.TLSCertKey: ca.CertPEM, corev1.TLSPrivateKeyKey: ca.KeyPEM}
	if !caChanged && caSecret != nil && maps.EqualFunc(caSecret.Data, caData, bytes.Equal) && hasLabels(caSecret, "ca") {
		fmt.Fprintf(out, "Secret %s/%s: unchanged\n", o.Namespace, o.CASecret)
	} else if err := o.write(ctx, caSecret, o.CASecret, "ca", caData, "", out); err != nil {
		return err
	}
	servingData := map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM, "ca.crt": ca.CertPEM}
	if serving != nil && takeover == "" && maps.EqualFunc(serving.Data, servingData, bytes.Equal) && hasLabels(serving, "tls") {
		fmt.Fprintf(out, "Secret %s/%s: unchanged\n", o.Namespace, o.Secret)
		return nil
	}
	return o.write(ctx, serving, o.Secret, "tls", servingData, takeover, out)
}

// caRequest names the CA for people reading certificates: the release's namespace and Secret in its unit.
func (o *CertgenOptions) caRequest() certs.Request {
	unit := o.Namespace + "/" + o.Secret
	if len(unit) > 64 {
		unit = unit[:64]
	}
	return certs.Request{CommonName: "connected-registry CA", Unit: unit, Key: o.spec, Duration: o.CADuration}
}

func (o *CertgenOptions) get(ctx context.Context, name string) (*corev1.Secret, error) {
	s, err := o.Client.CoreV1().Secrets(o.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s/%s: %w", o.Namespace, name, err)
	}
	return s, nil
}

// loadCA returns the CA of the Secret when it can be kept, else nil and why not.
func (o *CertgenOptions) loadCA(s *corev1.Secret, now time.Time) (*certs.Pair, string) {
	ref := o.Namespace + "/" + o.CASecret
	if s == nil {
		return nil, "Secret " + ref + " did not exist"
	}
	ca, err := certs.ParsePair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Sprintf("the CA in Secret %s could not be used (%v)", ref, err)
	}
	if problem := certs.CAProblem(ca, now, o.Duration); problem != "" {
		return nil, fmt.Sprintf("the CA in Secret %s could not be kept: %s", ref, problem)
	}
	return ca, ""
}

// loadLeaf returns the serving certificate of the Secret when it can be kept, else nil and why not.
func (o *CertgenOptions) loadLeaf(s *corev1.Secret, ca *certs.Pair, now time.Time) (*certs.Pair, string) {
	if s == nil {
		return nil, "Secret " + o.Namespace + "/" + o.Secret + " did not exist"
	}
	leaf, err := certs.ParsePair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Sprintf("the certificate in Secret %s/%s could not be used (%v)", o.Namespace, o.Secret, err)
	}
	if problem := certs.LeafProblem(leaf, ca, o.leafRequest(), now); problem != "" {
		return nil, "the certificate in Secret " + o.Namespace + "/" + o.Secret + " could not be kept: " + problem
	}
	return leaf, ""
}

// write creates or updates a kubernetes.io/tls Secret with our labels; an update sends the resourceVersion
// read, so a concurrent change fails instead of being lost.
func (o *CertgenOptions) write(ctx context.Context, existing *corev1.Secret, name, component string, data map[string][]byte, takeover string, out io.Writer) error {
	secrets := o.Client.CoreV1().Secrets(o.Namespace)
	ref := o.Namespace + "/" + name
	if existing == nil {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: certgenLabels(component)},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		}
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{FieldManager: CertgenManagedBy}); err != nil {
			return fmt.Errorf("creating Secret %s: %w", ref, err)
		}
		fmt.Fprintf(out, "Secret %s: created\n", ref)
		return nil
	}
	s := existing.DeepCopy()
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	maps.Copy(s.Labels, certgenLabels(component))
	s.Data = data
	verb := "updated"
	if takeover != "" {
		// Helm would delete the Secret it made for tls.crt once the upgrade drops it from the manifest; a
		// Certificate's owner reference would let the garbage collector delete it with the Certificate.
		s.OwnerReferences = nil
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		delete(s.Annotations, "meta.helm.sh/release-name")
		delete(s.Annotations, "meta.helm.sh/release-namespace")
		s.Annotations[helmKeep] = "keep"
		verb = "taken over from " + takeover + " and updated"
	}
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{FieldManager: CertgenManagedBy}); err != nil {
		return fmt.Errorf("updating Secret %s: %w", ref, err)
	}
	fmt.Fprintf(out, "Secret %s: %s\n", ref, verb)
	return nil
}

func certgenLabels(component string) map[string]string {
	return map[string]string{LabelPartOf: PartOf, LabelManagedBy: CertgenManagedBy, LabelComponent: component}
}

func hasLabels(s *corev1.Secret, component string) bool {
	for k, v := range certgenLabels(component) {
		if s.Labels[k] != v {
			return false
		}
	}
	return true
}

func ownedByCertgen(s *corev1.Secret) bool { return s.Labels[LabelManagedBy] == CertgenManagedBy }

// formerOwner names who made a Secret certgen may take over: Helm (tls.crt given before) or cert-manager
// (cert-manager.enabled before); "" for anyone else.
func formerOwner(s *corev1.Secret) string {
	switch {
	case s.Labels[LabelManagedBy] == "Helm" || s.Annotations["meta.helm.sh/release-name"] != "":
		return "Helm"
	case s.Annotations["cert-manager.io/certificate-name"] != "":
		return "cert-manager"
	}
	return ""
}

func describeCert(p *certs.Pair) string {
	spec, _ := certs.SpecOf(p.Cert.PublicKey)
	return fmt.Sprintf("%q (%s)", p.Cert.Subject.CommonName, spec)
}
