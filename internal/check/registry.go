package check

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

// RenewalWindow is how long before its expiry a certificate is reported; the same as the alert of the metrics.
const RenewalWindow = 14 * 24 * time.Hour

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

// certificate: the registry's TLS Secret holds a certificate that is valid now, names the Service's ClusterIP, and
// chains to the CA published in the trust bundle ConfigMap, which the nodes install. It reads the Secret and the
// ConfigMap rather than the certificate the registry serves: the tls-reloader installs only a certificate that
// passes these same tests, so the Secret is what the registry serves or is about to serve, and a Secret that fails
// them is exactly what the operator must fix; reading them needs no network path from the workstation to the
// registry. The registry's own answer is covered by registry-ready (its readiness probe is an HTTPS request).
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
	leafs := certs.ParseChain(s.Data[corev1.TLSCertKey])
	if len(leafs) == 0 {
		return line(CheckCertificate, Fail, "put the PEM certificate chain into the Secret's tls.crt", "Secret %s has no PEM certificate in tls.crt", t.tlsSecret)
	}
	leaf := leafs[0]
	name := fmt.Sprintf("the certificate of Secret %s (serial %s)", t.tlsSecret, leaf.SerialNumber)
	now := c.now()
	reissue := "reissue it: with cert-manager or generated certificates, delete the Secret and run helm upgrade; with tls.secret or tls.crt, give a new certificate"
	switch {
	case now.After(leaf.NotAfter):
		return line(CheckCertificate, Fail, reissue, "%s expired on %s", name, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return line(CheckCertificate, Fail, "check the clock of the machine that issued it; "+reissue, "%s is not valid before %s", name, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if t.clusterIP != "" {
		ip, err := netip.ParseAddr(t.clusterIP)
		if err == nil && !slices.ContainsFunc(leaf.IPAddresses, func(a net.IP) bool {
			b, ok := netip.AddrFromSlice(a)
			return ok && b.Unmap() == ip.Unmap()
		}) {
			return line(CheckCertificate, Fail, "the nodes pull from "+t.clusterIP+":443 and refuse this certificate; the tls-reloader does not install it. "+reissue+" with the IP SAN "+t.clusterIP,
				"%s lacks service.clusterIP %s in its subject alternative names (%s)", name, t.clusterIP, certs.SANs(leaf))
		}
	}
	if t.bundle == "" {
		return line(CheckCertificate, Warn, "the registry Deployment was changed after install: compare it with `helm get manifest`",
			"%s is valid until %s, but the tls-reloader names no trust bundle to check its chain against", name, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	published, err := (bundle.ConfigMap{Client: c.Client, Namespace: c.Namespace, Name: t.bundle}).Read(ctx)
	if err != nil {
		return line(CheckCertificate, Fail, "the tls-reloader publishes it: see kubectl -n "+c.Namespace+" logs deployment/"+c.target.deployment.Name+" -c tls-reloader",
			"the published CA is not readable: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(published)
	inter := x509.NewCertPool()
	for _, ic := range leafs[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		hint := "the nodes trust the CA of ConfigMap " + t.bundle + ", published from the Secret's ca.crt: put the CA that issued tls.crt into ca.crt"
		if !bytes.Equal(bytes.TrimSpace(published), bytes.TrimSpace(s.Data[bundle.Key])) {
			hint = "the Secret's ca.crt differs from the published CA: the tls-reloader publishes it within seconds; if this stays, see kubectl -n " + c.Namespace + " logs deployment/" + c.target.deployment.Name + " -c tls-reloader"
		}
		return line(CheckCertificate, Fail, hint, "%s does not chain to the CA published in ConfigMap %s (CA %s): %v", name, t.bundle, bundle.Fingerprint(published), err)
	}
	if left := leaf.NotAfter.Sub(now); left < RenewalWindow {
		return line(CheckCertificate, Warn, "renew it before it expires: "+reissue,
			"%s expires in %s, on %s", name, left.Round(time.Hour), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return line(CheckCertificate, OK, "", "%s is valid until %s, names %s and chains to the published CA %s",
		name, leaf.NotAfter.UTC().Format("2006-01-02"), t.clusterIP, bundle.Fingerprint(published))
}
