package framework

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

var (
	crdGVR         = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	certificateGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}
	issuerGVR      = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "issuers"}
)

// InstallCertManagerCRDs creates cert-manager's real CRDs, from the github.com/cert-manager/cert-manager module
// at the version the chart depends on, and waits until the API server serves them. It returns a function that
// deletes them again.
func (e *Env) InstallCertManagerCRDs(ctx context.Context) (func(), error) {
	dir, err := chartrender.CertManagerModuleDir()
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "deploy", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs under %s/deploy/crds: %v", dir, err)
	}
	dyn, err := dynamic.NewForConfig(e.REST)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(bytes.TrimPrefix(bytes.TrimSpace(b), []byte("---")), &obj.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if _, err := dyn.Resource(crdGVR).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating CRD %s: %w", obj.GetName(), err)
		}
		names = append(names, obj.GetName())
	}
	remove := func() {
		for _, n := range names {
			_ = dyn.Resource(crdGVR).Delete(context.Background(), n, metav1.DeleteOptions{})
		}
		_ = wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := e.Client.Discovery().ServerResourcesForGroupVersion("cert-manager.io/v1")
			return err != nil, nil
		})
	}
	err = wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := e.Client.Discovery().ServerResourcesForGroupVersion("cert-manager.io/v1")
		return err == nil && len(list.APIResources) >= 4, nil
	})
	if err != nil {
		remove()
		return nil, fmt.Errorf("cert-manager's CRDs are not served: %w", err)
	}
	return remove, nil
}

// CertManagerStandIn is a TEST-ONLY STAND-IN for cert-manager's controller, whose image cannot be obtained on
// this offline machine. It is not cert-manager. In one namespace it issues Certificates the way their spec and
// Issuer ask, for the kinds the chart uses: a CA Certificate (isCA) from a selfSigned Issuer, and a serving
// Certificate from a ca Issuer. It writes the Secret as cert-manager does (type kubernetes.io/tls, tls.crt,
// tls.key, ca.crt, the secretTemplate's labels), reissues when the spec's names or the renewal time say so, and
// sets the Ready conditions. The real API server validates every object against cert-manager's real CRDs.
type CertManagerStandIn struct {
	dyn    dynamic.Interface
	e      *Env
	ns     string
	cancel context.CancelFunc
	done   chan struct{}
	// Issued counts the certificates issued, by Certificate name.
	issued map[string]int
	errs   []string
}

// StartCertManagerStandIn reconciles ns every 300 ms until Stop.
func (e *Env) StartCertManagerStandIn(ctx context.Context, ns string) (*CertManagerStandIn, error) {
	dyn, err := dynamic.NewForConfig(e.REST)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &CertManagerStandIn{dyn: dyn, e: e, ns: ns, cancel: cancel, done: make(chan struct{}), issued: map[string]int{}}
	go func() {
		defer close(s.done)
		for {
			if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
				msg := err.Error()
				if !slices.Contains(s.errs, msg) {
					s.errs = append(s.errs, msg)
					fmt.Fprintf(e.Log, "cert-manager stand-in: %v\n", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return s, nil
}

// Stop ends the stand-in and returns how many certificates it issued, by Certificate name.
func (s *CertManagerStandIn) Stop() map[string]int {
	s.cancel()
	<-s.done
	return s.issued
}

func (s *CertManagerStandIn) reconcile(ctx context.Context) error {
	issuers, err := s.dyn.Resource(issuerGVR).Namespace(s.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range issuers.Items {
		if err := s.setReady(ctx, issuerGVR, &issuers.Items[i], "IsReady", "stand-in: ready"); err != nil {
			return err
		}
	}
	list, err := s.dyn.Resource(certificateGVR).Namespace(s.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for i := range list.Items {
		errs = append(errs, s.certificate(ctx, &list.Items[i]))
	}
	return errors.Join(errs...)
}

// certSpec is the part of a Certificate's spec the stand-in honours.
type certSpec struct {
	SecretName     string   `json:"secretName"`
	CommonName     string   `json:"commonName"`
	DNSNames       []string `json:"dnsNames"`
	IPAddresses    []string `json:"ipAddresses"`
	Duration       string   `json:"duration"`
	IsCA           bool     `json:"isCA"`
	SecretTemplate struct {
		Labels map[string]string `json:"labels"`
	} `json:"secretTemplate"`
	PrivateKey struct {
		Algorithm string `json:"algorithm"`
		Size      int    `json:"size"`
	} `json:"privateKey"`
	IssuerRef struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
	} `json:"issuerRef"`
}

func (s *CertManagerStandIn) certificate(ctx context.Context, u *unstructured.Unstructured) error {
	var spec certSpec
	if err := fromUnstructured(u.Object["spec"], &spec); err != nil {
		return fmt.Errorf("certificate %s: %w", u.GetName(), err)
	}
	if spec.IssuerRef.Kind != "" && spec.IssuerRef.Kind != "Issuer" {
		return fmt.Errorf("certificate %s: the stand-in handles Issuers only, not %s", u.GetName(), spec.IssuerRef.Kind)
	}
	issuer, err := s.dyn.Resource(issuerGVR).Namespace(s.ns).Get(ctx, spec.IssuerRef.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("certificate %s: issuer %s: %w", u.GetName(), spec.IssuerRef.Name, err)
	}
	duration := 90 * 24 * time.Hour
	if spec.Duration != "" {
		if duration, err = time.ParseDuration(spec.Duration); err != nil {
			return fmt.Errorf("certificate %s: duration %q: %w", u.GetName(), spec.Duration, err)
		}
	}
	algorithm, size := spec.PrivateKey.Algorithm, spec.PrivateKey.Size
	if algorithm == "" {
		algorithm = "RSA" // cert-manager's default
	}
	if size == 0 {
		size = map[string]int{"RSA": 2048, "ECDSA": 256}[algorithm]
	}
	key, err := certs.ParseKeySpec(algorithm, size)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", u.GetName(), err)
	}
	req := certs.Request{CommonName: spec.CommonName, DNSNames: spec.DNSNames, Key: key, Duration: duration}
	for _, ip := range spec.IPAddresses {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return fmt.Errorf("certificate %s: ipAddresses %q: %w", u.GetName(), ip, err)
		}
		req.IPs = append(req.IPs, addr)
	}

	secrets := s.e.Client.CoreV1().Secrets(s.ns)
	existing, err := secrets.Get(ctx, spec.SecretName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	now := time.Now()
	if existing != nil && err == nil && upToDate(existing, spec, now) {
		return s.setReady(ctx, certificateGVR, u, "Ready", "stand-in: certificate is up to date")
	}

	var issued *certs.Pair
	var caPEM []byte
	switch {
	case issuerHas(issuer, "selfSigned") && spec.IsCA:
		issued, err = certs.NewCA(rand.Reader, req, now)
		if issued != nil {
			caPEM = issued.CertPEM
		}
	case issuerHas(issuer, "ca") && !spec.IsCA:
		caSecretName, _, _ := unstructured.NestedString(issuer.Object, "spec", "ca", "secretName")
		caSecret, gerr := secrets.Get(ctx, caSecretName, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("certificate %s: CA Secret %s of issuer %s: %w", u.GetName(), caSecretName, issuer.GetName(), gerr)
		}
		ca, perr := certs.ParsePair(caSecret.Data[corev1.TLSCertKey], caSecret.Data[corev1.TLSPrivateKeyKey])
		if perr != nil {
			return fmt.Errorf("certificate %s: CA Secret %s: %w", u.GetName(), caSecretName, perr)
		}
		issued, err = certs.Issue(rand.Reader, ca, req, now)
		caPEM = ca.CertPEM
	default:
		return fmt.Errorf("certificate %s: the stand-in handles isCA from a selfSigned Issuer and serving certificates from a ca Issuer only", u.GetName())
	}
	if err != nil {
		return fmt.Errorf("certificate %s: %w", u.GetName(), err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: spec.SecretName, Namespace: s.ns, Labels: spec.SecretTemplate.Labels,
			Annotations: map[string]string{"cert-manager.io/certificate-name": u.GetName(), "cert-manager.io/issuer-name": issuer.GetName(),
				"cert-manager.io/issuer-kind": "Issuer", "cert-manager.io/issuer-group": "cert-manager.io"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: issued.CertPEM, corev1.TLSPrivateKeyKey: issued.KeyPEM, "ca.crt": caPEM},
	}
	if existing != nil && err == nil && existing.Name != "" {
		secret.ResourceVersion = existing.ResourceVersion
		_, err = secrets.Update(ctx, secret, metav1.UpdateOptions{})
	} else {
		_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("certificate %s: writing Secret %s: %w", u.GetName(), spec.SecretName, err)
	}
	s.issued[u.GetName()]++
	fmt.Fprintf(s.e.Log, "cert-manager stand-in: issued %s/%s into Secret %s (serial %s)\n", s.ns, u.GetName(), spec.SecretName, issued.Cert.SerialNumber)
	return s.setReady(ctx, certificateGVR, u, "Ready", "stand-in: certificate issued")
}

// upToDate: the Secret holds a certificate with the spec's names, before two thirds of its life.
func upToDate(secret *corev1.Secret, spec certSpec, now time.Time) bool {
	block, _ := pem.Decode(secret.Data[corev1.TLSCertKey])
	if block == nil || len(secret.Data[corev1.TLSPrivateKeyKey]) == 0 {
		return false
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil || c.IsCA != spec.IsCA || !now.Before(certs.RenewalTime(c)) {
		return false
	}
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	return slices.Equal(sorted(c.DNSNames), sorted(spec.DNSNames)) && slices.Equal(sorted(ips), sorted(spec.IPAddresses))
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func issuerHas(issuer *unstructured.Unstructured, kind string) bool {
	_, ok, _ := unstructured.NestedMap(issuer.Object, "spec", kind)
	return ok
}

// setReady sets the Ready condition in the object's status, through the status subresource.
func (s *CertManagerStandIn) setReady(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured, reason, message string) error {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" && m["status"] == "True" {
			return nil
		}
	}
	u = u.DeepCopy()
	cond := map[string]any{"type": "Ready", "status": "True", "reason": reason, "message": message,
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "observedGeneration": u.GetGeneration()}
	if err := unstructured.SetNestedSlice(u.Object, []any{cond}, "status", "conditions"); err != nil {
		return err
	}
	_, err := s.dyn.Resource(gvr).Namespace(s.ns).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("%s %s: status: %w", strings.TrimSuffix(gvr.Resource, "s"), u.GetName(), err)
	}
	return nil
}

func fromUnstructured(in any, out any) error {
	b, err := yaml.Marshal(in)
	if err != nil {
		return err
	}
	return yaml.Unmarshal(b, out)
}
