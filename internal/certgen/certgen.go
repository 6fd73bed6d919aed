// Package certgen generates the registry's CA and serving certificate into kubernetes.io/tls Secrets, for the
// chart's certgen Job (on install and upgrade) and its renewal CronJob. It keeps what is still right: the CA while
// it can issue a full-length serving certificate, the serving certificate while it holds the current names and
// key, was issued by the current CA and is before two thirds of its life. It writes only what changed, and never
// touches a Secret someone else made, but for the ones Helm or cert-manager made for an earlier TLS source.
package certgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/clock"
)

// Labels on the Secrets certgen writes. They are not Helm's: the Secrets outlive upgrades, and the chart's
// post-delete cleanup removes what carries them.
const (
	LabelPartOf    = "app.kubernetes.io/part-of"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelComponent = "app.kubernetes.io/component"
	PartOf         = "connected-registry"
	ManagedBy      = "connected-registry-certgen"
	// helmKeep stops Helm from deleting a Secret it used to manage (tls.crt given before) when certgen takes it
	// over on upgrade.
	helmKeep = "helm.sh/resource-policy"
	// maxUnit is the longest organizational unit a certificate's subject may hold.
	maxUnit = 64
)

// ErrForeignSecret is returned when the Secret to write exists and belongs to someone else.
var ErrForeignSecret = errors.New("the Secret exists and was not made by certgen")

// Generator writes the CA and the serving certificate of one release.
type Generator struct {
	Client    kubernetes.Interface
	Namespace string
	// Secret receives the serving certificate: tls.crt, tls.key and ca.crt. The registry mounts it.
	Secret string
	// CASecret keeps the CA's certificate and key; the registry never mounts it.
	CASecret string
	// IPs and DNSNames are the serving certificate's SANs.
	IPs      []netip.Addr
	DNSNames []string
	// Key is the algorithm and size of new keys.
	Key certs.KeySpec
	// Duration of a serving certificate; it is reissued after two thirds of it.
	Duration time.Duration
	// CADuration of a new CA.
	CADuration time.Duration
	// Clock defaults to the real time.
	Clock clock.Clock
	// Rand defaults to crypto/rand.
	Rand io.Reader
}

func (g *Generator) leafRequest() certs.Request {
	return certs.Request{IPs: g.IPs, DNSNames: g.DNSNames, Key: g.Key, Duration: g.Duration}
}

// Run reads both Secrets, keeps or regenerates the CA, keeps or reissues the serving certificate, and writes
// only what changed. It prints one line for the CA, one for the serving certificate and one per Secret.
func (g *Generator) Run(ctx context.Context, out io.Writer) error {
	now := clock.Or(g.Clock).Now()
	random := g.Rand
	if random == nil {
		random = rand.Reader
	}

	caSecret, err := g.get(ctx, g.CASecret)
	if err != nil {
		return err
	}
	if caSecret != nil && !ownedByCertgen(caSecret) {
		return fmt.Errorf("%w: Secret %s/%s has no label %s=%s; delete it, or give --ca-secret another name",
			ErrForeignSecret, g.Namespace, g.CASecret, LabelManagedBy, ManagedBy)
	}
	ca, why := g.loadCA(caSecret, now)
	caChanged := ca == nil
	if ca == nil {
		if ca, err = certs.NewCA(random, g.caRequest(), now); err != nil {
			return err
		}
		fmt.Fprintf(out, "CA: generated %s, valid until %s: %s\n", describeCert(ca), ca.Cert.NotAfter.UTC().Format(time.RFC3339), why)
	} else {
		fmt.Fprintf(out, "CA: kept %s, valid until %s\n", describeCert(ca), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}

	serving, err := g.get(ctx, g.Secret)
	if err != nil {
		return err
	}
	takeover := ""
	if serving != nil && !ownedByCertgen(serving) {
		if takeover = formerOwner(serving); takeover == "" {
			return fmt.Errorf("%w: Secret %s/%s has no label %s=%s and was not made by Helm or cert-manager; delete it to let certgen write it, or name it in tls.secret to serve it as it is",
				ErrForeignSecret, g.Namespace, g.Secret, LabelManagedBy, ManagedBy)
		}
		if serving.Type != corev1.SecretTypeTLS {
			return fmt.Errorf("%w: Secret %s/%s is of type %s, not %s; delete it to let certgen write it",
				ErrForeignSecret, g.Namespace, g.Secret, serving.Type, corev1.SecretTypeTLS)
		}
	}
	leaf, why := g.loadLeaf(serving, ca, now)
	if leaf == nil {
		if leaf, err = certs.Issue(random, ca, g.leafRequest(), now); err != nil {
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
		fmt.Fprintf(out, "Secret %s/%s: unchanged\n", g.Namespace, g.CASecret)
	} else if err := g.write(ctx, caSecret, g.CASecret, "ca", caData, "", out); err != nil {
		return err
	}
	servingData := map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM, "ca.crt": ca.CertPEM}
	if serving != nil && takeover == "" && maps.EqualFunc(serving.Data, servingData, bytes.Equal) && hasLabels(serving, "tls") {
		fmt.Fprintf(out, "Secret %s/%s: unchanged\n", g.Namespace, g.Secret)
		return nil
	}
	return g.write(ctx, serving, g.Secret, "tls", servingData, takeover, out)
}

// caRequest names the CA for people reading certificates: the release's namespace and Secret in its unit.
func (g *Generator) caRequest() certs.Request {
	unit := g.Namespace + "/" + g.Secret
	if len(unit) > maxUnit {
		unit = unit[:maxUnit]
	}
	return certs.Request{CommonName: "connected-registry CA", Unit: unit, Key: g.Key, Duration: g.CADuration}
}

func (g *Generator) get(ctx context.Context, name string) (*corev1.Secret, error) {
	s, err := g.Client.CoreV1().Secrets(g.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s/%s: %w", g.Namespace, name, err)
	}
	return s, nil
}

// loadCA returns the CA of the Secret when it can be kept, else nil and why not.
func (g *Generator) loadCA(s *corev1.Secret, now time.Time) (*certs.Pair, string) {
	ref := g.Namespace + "/" + g.CASecret
	if s == nil {
		return nil, "Secret " + ref + " did not exist"
	}
	ca, err := certs.ParsePair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Sprintf("the CA in Secret %s could not be used (%v)", ref, err)
	}
	if problem := certs.CAProblem(ca, now, g.Duration); problem != "" {
		return nil, fmt.Sprintf("the CA in Secret %s could not be kept: %s", ref, problem)
	}
	return ca, ""
}

// loadLeaf returns the serving certificate of the Secret when it can be kept, else nil and why not.
func (g *Generator) loadLeaf(s *corev1.Secret, ca *certs.Pair, now time.Time) (*certs.Pair, string) {
	if s == nil {
		return nil, "Secret " + g.Namespace + "/" + g.Secret + " did not exist"
	}
	leaf, err := certs.ParsePair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Sprintf("the certificate in Secret %s/%s could not be used (%v)", g.Namespace, g.Secret, err)
	}
	if problem := certs.LeafProblem(leaf, ca, g.leafRequest(), now); problem != "" {
		return nil, "the certificate in Secret " + g.Namespace + "/" + g.Secret + " could not be kept: " + problem
	}
	return leaf, ""
}

// write creates or updates a kubernetes.io/tls Secret with our labels; an update sends the resourceVersion
// read, so a concurrent change fails instead of being lost.
func (g *Generator) write(ctx context.Context, existing *corev1.Secret, name, component string, data map[string][]byte, takeover string, out io.Writer) error {
	secrets := g.Client.CoreV1().Secrets(g.Namespace)
	ref := g.Namespace + "/" + name
	if existing == nil {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.Namespace, Labels: labels(component)},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		}
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{FieldManager: ManagedBy}); err != nil {
			return fmt.Errorf("creating Secret %s: %w", ref, err)
		}
		fmt.Fprintf(out, "Secret %s: created\n", ref)
		return nil
	}
	s := existing.DeepCopy()
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	maps.Copy(s.Labels, labels(component))
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
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{FieldManager: ManagedBy}); err != nil {
		return fmt.Errorf("updating Secret %s: %w", ref, err)
	}
	fmt.Fprintf(out, "Secret %s: %s\n", ref, verb)
	return nil
}

func labels(component string) map[string]string {
	return map[string]string{LabelPartOf: PartOf, LabelManagedBy: ManagedBy, LabelComponent: component}
}

func hasLabels(s *corev1.Secret, component string) bool {
	for k, v := range labels(component) {
		if s.Labels[k] != v {
			return false
		}
	}
	return true
}

func ownedByCertgen(s *corev1.Secret) bool { return s.Labels[LabelManagedBy] == ManagedBy }

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
