package check

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/tlscheck"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

// registryReady: the registry Deployment has every replica ready and up to date; if not, why its pod is not.
func (c *Checker) registryReady(ctx context.Context) Line {
	d := c.target.deployment
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	describe := fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s get events --field-selector type=Warning", c.Namespace, d.Name, c.Namespace)
	if d.Status.ReadyReplicas >= want && d.Status.UpdatedReplicas >= want && want > 0 {
		return line(CheckRegistryReady, OK, "", "Deployment %s: %d of %d replicas ready", d.Name, d.Status.ReadyReplicas, want)
	}
	why := c.podProblem(ctx, d.Spec.Selector)
	if why != "" {
		why = ": " + why
	}
	return line(CheckRegistryReady, Fail, describe, "Deployment %s: %d of %d replicas ready%s", d.Name, d.Status.ReadyReplicas, want, why)
}

// podProblem names the first container of the Deployment's pods that is not ready, and why.
func (c *Checker) podProblem(ctx context.Context, selector *metav1.LabelSelector) string {
	if selector == nil {
		return ""
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return ""
	}
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Sprintf("cannot list its pods: %v", err)
	}
	if len(pods.Items) == 0 {
		return "it has no pod"
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodPending {
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
					return fmt.Sprintf("pod %s is not scheduled (%s)", p.Name, strings.TrimSpace(cond.Reason+" "+cond.Message))
				}
			}
		}
		for _, st := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			if st.Ready {
				continue
			}
			switch {
			case st.State.Waiting != nil:
				return fmt.Sprintf("pod %s, container %s is waiting (%s)", p.Name, st.Name, strings.TrimSpace(st.State.Waiting.Reason+" "+st.State.Waiting.Message))
			case st.State.Terminated != nil && st.State.Terminated.Reason != "Completed":
				return fmt.Sprintf("pod %s, container %s terminated (%s)", p.Name, st.Name, strings.TrimSpace(st.State.Terminated.Reason+" "+st.State.Terminated.Message))
			case st.State.Running != nil:
				return fmt.Sprintf("pod %s, container %s runs but is not ready", p.Name, st.Name)
			}
		}
	}
	return ""
}

// certificate: the registry's TLS Secret passes the same checks as the preflight's (internal/tlscheck: a valid
// key pair, valid now, names the Service's ClusterIP, chains to its ca.crt, not overdue for renewal), and chains to
// the CA published in the trust bundle ConfigMap, which the nodes install. It reads the Secret and the ConfigMap
// rather than the certificate the registry serves: the tls-reloader installs only a certificate that passes these
// same tests, so the Secret is what the registry serves or is about to serve, and a Secret that fails them is
// exactly what the operator must fix; reading them needs no network path from the workstation to the registry. The
// registry's own answer is covered by registry-ready (its readiness probe is an HTTPS request).
func (c *Checker) certificate(ctx context.Context) Line {
	t := c.target
	if t.tlsSecret == "" {
		return line(CheckCertificate, Warn, "the registry Deployment was changed after install: compare it with `helm get manifest`",
			"the registry Deployment has no tls-reloader naming the TLS Secret: cannot tell which certificate it serves")
	}
	s, err := c.Client.CoreV1().Secrets(c.Namespace).Get(ctx, t.tlsSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return line(CheckCertificate, Fail, "with cert-manager, see kubectl -n "+c.Namespace+" describe certificate; with generated certificates, the certgen Job's log; with tls.secret, create the Secret",
			"the TLS Secret %s/%s does not exist", c.Namespace, t.tlsSecret)
	}
	if err != nil {
		return line(CheckCertificate, Fail, "this check needs get on Secrets in namespace "+c.Namespace, "reading the TLS Secret %s/%s: %v", c.Namespace, t.tlsSecret, err)
	}
	opts := tlscheck.Options{Clock: c.Clock}
	if ip, err := netip.ParseAddr(t.clusterIP); err == nil {
		opts.ClusterIP = ip
	}
	report := tlscheck.CheckSecret(tlscheck.Secret{Namespace: c.Namespace, Name: t.tlsSecret, Found: true, Type: string(s.Type), Data: s.Data}, opts)
	reissue := "with cert-manager or generated certificates, delete the Secret and run helm upgrade to reissue it; with tls.secret or tls.crt, give a new certificate"
	if err := report.Err(); err != nil {
		return line(CheckCertificate, Fail, "the tls-reloader does not install it and keeps serving the certificate it has, if any; "+reissue, "%v", err)
	}
	leaf := report.Certificate
	name := fmt.Sprintf("the certificate of Secret %s (serial %s)", t.tlsSecret, leaf.SerialNumber)
	if t.bundle == "" {
		return line(CheckCertificate, Warn, "the registry Deployment was changed after install: compare it with `helm get manifest`",
			"%s is valid until %s, but the tls-reloader names no trust bundle to check its chain against", name, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	published, err := (bundle.ConfigMap{Client: c.Client, Namespace: c.Namespace, Name: t.bundle}).Read(ctx)
	if err != nil {
		return line(CheckCertificate, Fail, "the tls-reloader publishes it: see kubectl -n "+c.Namespace+" logs deployment/"+c.target.deployment.Name+" -c tls-reloader",
			"the published CA is not readable: %v", err)
	}
	if err := chainsTo(s.Data[corev1.TLSCertKey], published, c.now()); err != nil {
		hint := "the nodes trust the CA of ConfigMap " + t.bundle + ", published from the Secret's ca.crt: put the CA that issued tls.crt into ca.crt"
		if !bytes.Equal(bytes.TrimSpace(published), bytes.TrimSpace(s.Data[bundle.Key])) {
			hint = "the Secret's ca.crt differs from the published CA: the tls-reloader publishes it within seconds; if this stays, see kubectl -n " + c.Namespace + " logs deployment/" + c.target.deployment.Name + " -c tls-reloader"
		}
		return line(CheckCertificate, Fail, hint, "%s does not chain to the CA published in ConfigMap %s (CA %s): %v", name, t.bundle, bundle.Fingerprint(published), err)
	}
	if report.Status() == tlscheck.Warn {
		return line(CheckCertificate, Warn, reissue, "%s", report.Summary())
	}
	return line(CheckCertificate, OK, "", "%s is valid until %s, names %s and chains to the published CA %s",
		name, leaf.NotAfter.UTC().Format("2006-01-02"), t.clusterIP, bundle.Fingerprint(published))
}

// chainsTo verifies the PEM chain against the published CA bundle, as a node that installed it would.
func chainsTo(chainPEM, caPEM []byte, now time.Time) error {
	chain := certs.ParseChain(chainPEM)
	if len(chain) == 0 {
		return fmt.Errorf("no certificate in tls.crt")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}
