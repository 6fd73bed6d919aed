package preflight

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/connstring"
	"github.com/connected-registry/connected-registry/internal/english"
	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

// checkConnectionString parses the connection string the chart handed over, as the registry will.
func checkConnectionString(ctx context.Context, c *Checker) (Status, string) {
	v, found, err := c.inputValue(ctx, InputConnectionString)
	if err != nil {
		return fail("%v", err)
	}
	if !found {
		return ok("connectionString is not given: registry.parent.url names the parent")
	}
	cs, err := connstring.Parse(v)
	if err != nil {
		// connstring's messages name the field and the fix, and never hold the password.
		return fail("connectionString: %v", err)
	}
	return ok("connected registry %s syncs from %s with token %s", cs.ConnectedRegistryName, cs.ParentURL(), cs.SyncTokenName)
}

const certManagerGroupVersion = "cert-manager.io/v1"

// checkCertManager: cert-manager is there when the chart relies on one already installed, and not there
// when the chart is about to install its own.
func checkCertManager(_ context.Context, c *Checker) (Status, string) {
	cfg := c.Config
	if !cfg.CertManagerEnabled {
		if cfg.CertManagerInstall {
			return warn("cert-manager.install=true installs cert-manager, but cert-manager.enabled=false does not use it (TLS source %s): set cert-manager.install=false unless something else needs it", cfg.TLSSource)
		}
		return ok("not used: the TLS source is %s", cfg.TLSSource)
	}
	list, err := c.Client.Discovery().ServerResourcesForGroupVersion(certManagerGroupVersion)
	served := err == nil
	if err != nil && !apiMissing(err) {
		return warn("cannot tell whether cert-manager is installed (discovery of %s: %v)", certManagerGroupVersion, err)
	}
	switch {
	case cfg.CertManagerInstall && served && !cfg.Upgrade:
		return fail("cert-manager is already installed (the API %s is served), and cert-manager.install=true would install it a second time: set cert-manager.install=false to use the one in the cluster", certManagerGroupVersion)
	case cfg.CertManagerInstall && served:
		return ok("cert-manager, installed by this release, serves %s", certManagerGroupVersion)
	case cfg.CertManagerInstall:
		return ok("cert-manager is not installed yet: this release installs it")
	case !served:
		return fail("cert-manager.enabled=true with cert-manager.install=false needs cert-manager in the cluster, but the API %s is not served: install cert-manager first, or set cert-manager.install=true, or choose another TLS source (tls.secret, tls.crt, or cert-manager.enabled=false for generated certificates)", certManagerGroupVersion)
	}
	var missing []string
	for _, want := range []string{"certificates", "issuers"} {
		if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == want }) {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		return fail("cert-manager's API %s is served without %s: repair the cert-manager installation (its CRDs) before installing", certManagerGroupVersion, english.List(missing))
	}
	return ok("cert-manager serves %s with certificates and issuers", certManagerGroupVersion)
}

// checkTLS checks the material of the chosen TLS source against every case of SPEC §7.
func checkTLS(ctx context.Context, c *Checker) (Status, string) {
	cfg := c.Config
	opts := tlscheck.Options{DNSNames: cfg.DNSNames, Clock: c.Clock}
	if ip, err := netip.ParseAddr(cfg.ClusterIP); err == nil {
		opts.ClusterIP = ip
	}
	var r tlscheck.Report
	switch cfg.TLSSource {
	case SourceBYOC:
		var values [3]string
		for i, key := range []string{InputTLSCrt, InputTLSKey, InputTLSCACrt} {
			v, _, err := c.inputValue(ctx, key)
			if err != nil {
				return fail("%v", err)
			}
			values[i] = v
		}
		r = tlscheck.CheckValues(values[0], values[1], values[2], opts)
	case SourceSecret:
		sec := tlscheck.Secret{Namespace: cfg.Namespace, Name: cfg.TLSSecret}
		s, err := c.Client.CoreV1().Secrets(cfg.Namespace).Get(ctx, cfg.TLSSecret, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fail("cannot read Secret %s/%s named by tls.secret: %v", cfg.Namespace, cfg.TLSSecret, err)
		default:
			sec.Found, sec.Type, sec.Data = true, string(s.Type), s.Data
		}
		r = tlscheck.CheckSecret(sec, opts)
	case SourceCertManager:
		return ok("cert-manager issues the serving certificate for %s", strings.Join(append([]string{cfg.ClusterIP}, cfg.DNSNames...), ", "))
	case SourceGenerated:
		spec, err := certs.ParseKeySpec(cfg.KeyAlgorithm, cfg.KeySize)
		if err != nil {
			return fail("tls.keyAlgorithm=%s with tls.keySize=%d: %v; for ECDSA set tls.keySize=256, for RSA 2048, 3072 or 4096", cfg.KeyAlgorithm, cfg.KeySize, err)
		}
		return ok("certgen generates a CA and a serving certificate (%s) for %s", spec, strings.Join(append([]string{cfg.ClusterIP}, cfg.DNSNames...), ", "))
	default:
		return fail("unknown TLS source %q: the chart passes secret, byoc, cert-manager or generated", cfg.TLSSource)
	}
	for _, res := range r.Results {
		c.debugf("tls check %s", res)
	}
	if r.Status() != OK {
		return r.Status(), r.Summary()
	}
	leaf := r.Certificate
	return ok("%s passes all %d checks: a certificate for %s, valid until %s", sourceName(cfg), len(r.Results), certs.SANs(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
}

func sourceName(cfg Config) string {
	if cfg.TLSSource == SourceSecret {
		return "Secret " + cfg.Namespace + "/" + cfg.TLSSecret
	}
	return "tls.crt"
}

const (
	defaultClassAnnotation     = "storageclass.kubernetes.io/is-default-class"
	defaultClassBetaAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
)

// checkStorageClass: the cache volume's class exists (or a default does), and on upgrade the claim can take
// the values.
func checkStorageClass(ctx context.Context, c *Checker) (Status, string) {
	cfg := c.Config
	if t := cfg.Storage.Type; t != "" && t != StoragePVC {
		return ok("storage.type=%s: the cache needs no volume", t)
	}
	var pvc *corev1.PersistentVolumeClaim
	if cfg.PVC != "" {
		p, err := c.Client.CoreV1().PersistentVolumeClaims(cfg.Namespace).Get(ctx, cfg.PVC, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return warn("cannot read the release's PersistentVolumeClaim %s/%s: %v", cfg.Namespace, cfg.PVC, err)
		default:
			pvc = p
		}
	}
	classes, err := c.Client.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return warn("cannot list StorageClasses to check pvc.storageClassName: %v", err)
	}
	byName := map[string]*storagev1.StorageClass{}
	var names, defaults []string
	for i := range classes.Items {
		sc := &classes.Items[i]
		byName[sc.Name] = sc
		names = append(names, sc.Name)
		if sc.Annotations[defaultClassAnnotation] == "true" || sc.Annotations[defaultClassBetaAnnotation] == "true" {
			defaults = append(defaults, sc.Name)
		}
	}
	slices.Sort(names)
	slices.Sort(defaults)

	if pvc != nil {
		return checkExistingClaim(cfg, pvc, byName)
	}
	if cfg.StorageClass != "" {
		sc, found := byName[cfg.StorageClass]
		if !found {
			return fail("pvc.storageClassName %q does not exist, so the cache volume would stay Pending: set it to one of %s, or leave it empty for the default", cfg.StorageClass, classList(names, defaults))
		}
		return ok("StorageClass %s exists (provisioner %s)", sc.Name, sc.Provisioner)
	}
	switch len(defaults) {
	case 0:
		if len(names) == 0 {
			return fail("the cluster has no StorageClass, so the cache volume would stay Pending: install a provisioner (like local-path-provisioner) or create a StorageClass, and set pvc.storageClassName")
		}
		return fail("pvc.storageClassName is empty and no StorageClass is the default, so the cache volume would stay Pending: set pvc.storageClassName to one of %s", classList(names, defaults))
	case 1:
		return ok("pvc.storageClassName is empty: the default StorageClass %s provisions the cache volume", defaults[0])
	}
	return warn("pvc.storageClassName is empty and %s are all marked default, so Kubernetes picks the newest: set pvc.storageClassName to the one you mean", english.List(defaults))
}

func checkExistingClaim(cfg Config, pvc *corev1.PersistentVolumeClaim, classes map[string]*storagev1.StorageClass) (Status, string) {
	ref := cfg.Namespace + "/" + pvc.Name
	have := ""
	if pvc.Spec.StorageClassName != nil {
		have = *pvc.Spec.StorageClassName
	}
	if cfg.StorageClass != "" && cfg.StorageClass != have {
		return fail("pvc.storageClassName is %q, but the release's PersistentVolumeClaim %s uses %q and a claim's class cannot change: set pvc.storageClassName=%s to keep the cached images", cfg.StorageClass, ref, have, have)
	}
	current := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if cfg.StorageRequest != "" {
		want, err := resource.ParseQuantity(cfg.StorageRequest)
		if err != nil {
			return fail("pvc.storageRequest %q is not a quantity like 500Gi", cfg.StorageRequest)
		}
		switch cmp := want.Cmp(current); {
		case cmp < 0:
			return fail("pvc.storageRequest is %s, but the release's PersistentVolumeClaim %s already has %s and a claim cannot shrink: set pvc.storageRequest=%s or more", want.String(), ref, current.String(), current.String())
		case cmp > 0:
			sc := classes[have]
			if sc == nil || sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion {
				return fail("pvc.storageRequest grows the release's PersistentVolumeClaim %s from %s to %s, but its StorageClass %q does not allow volume expansion: keep pvc.storageRequest=%s", ref, current.String(), want.String(), have, current.String())
			}
		}
	}
	return ok("the release's PersistentVolumeClaim %s keeps its StorageClass %q and %s of cached images", ref, have, current.String())
}

func classList(names, defaults []string) string {
	if len(names) == 0 {
		return "none (the cluster has no StorageClass)"
	}
	list := english.List(names)
	if len(defaults) == 1 {
		list += " (default " + defaults[0] + ")"
	}
	return list
}

// checkNodeSelector: the nodes trust distribution selects, and the registry's own node selector, match nodes.
func checkNodeSelector(ctx context.Context, c *Checker) (Status, string) {
	cfg := c.Config
	var notes []string
	if len(cfg.RegistryNodeSelector) > 0 {
		sel := strings.Join(cfg.RegistryNodeSelector, ",")
		if _, err := labels.Parse(sel); err != nil {
			return fail("registry.nodeSelector %s is not a valid label selector: %v", sel, err)
		}
		n, err := c.countNodes(ctx, sel)
		if err != nil {
			return warn("cannot list nodes to check registry.nodeSelector: %v", err)
		}
		if n == 0 {
			return fail("registry.nodeSelector %s matches no node, so the registry pod could not be scheduled: label a node with it, or change registry.nodeSelector", sel)
		}
		notes = append(notes, fmt.Sprintf("registry.nodeSelector %s matches %s", sel, nodes(n)))
	}
	switch {
	case !cfg.TrustDistribution:
		notes = append(notes, "trust distribution is off")
	case !cfg.UseNodeSelector:
		notes = append(notes, "trust distribution runs on every node")
	default:
		n, err := c.countNodes(ctx, TrustNodeLabel)
		if err != nil {
			return warn("cannot list nodes to check trustDistribution.useNodeSelector: %v", err)
		}
		if n == 0 {
			return fail("trustDistribution.useNodeSelector=true, but no node is labelled %s, so no node would trust the registry: label the nodes that pull from it (kubectl label node <node> %s), or set trustDistribution.useNodeSelector=false", TrustNodeLabel, TrustNodeLabel)
		}
		notes = append(notes, fmt.Sprintf("%s labelled %s", nodes(n), TrustNodeLabel))
	}
	return ok("%s", strings.Join(notes, "; "))
}

func nodes(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

// countNodes counts nodes matching a label selector, reading them a page at a time.
func (c *Checker) countNodes(ctx context.Context, selector string) (int, error) {
	n := 0
	opts := metav1.ListOptions{LabelSelector: selector, Limit: listPage}
	for {
		list, err := c.Client.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return 0, err
		}
		n += len(list.Items)
		if list.Continue == "" {
			return n, nil
		}
		opts.Continue = list.Continue
	}
}

// Pod Security admission's namespace labels.
const (
	PSSEnforceLabel = "pod-security.kubernetes.io/enforce"
	PSSAuditLabel   = "pod-security.kubernetes.io/audit"
	PSSWarnLabel    = "pod-security.kubernetes.io/warn"
)

// checkPodSecurity: with trust distribution on, the release namespace must admit the trust agent, whose hostPath
// volumes only the privileged level allows. Without this check the DaemonSet's pods are refused one by one and
// the install waits for its whole timeout before failing with "DaemonSet ... not ready".
func checkPodSecurity(ctx context.Context, c *Checker) (Status, string) {
	cfg := c.Config
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, cfg.Namespace, metav1.GetOptions{})
	if err != nil {
		return warn("cannot read namespace %s to check its Pod Security labels: %v", cfg.Namespace, err)
	}
	level := func(label string) string { return ns.Labels[label] }
	restrictive := func(l string) bool { return l == "baseline" || l == "restricted" }
	fixes := fmt.Sprintf("label the namespace for the privileged level (kubectl label namespace %s %s=privileged --overwrite), "+
		"or set trustDistribution.enabled=false and give the nodes the registry's CA yourself", cfg.Namespace, PSSEnforceLabel)
	if !cfg.TrustDistribution {
		if l := level(PSSEnforceLabel); l != "" {
			return ok("namespace %s enforces Pod Security level %s; trust distribution is off, and the registry and hook pods meet restricted", cfg.Namespace, l)
		}
		return ok("trust distribution is off, and the registry and hook pods meet the restricted Pod Security level")
	}
	if l := level(PSSEnforceLabel); restrictive(l) {
		return fail("namespace %s enforces the Pod Security level %s (%s=%s), which refuses the trust agent: its hostPath "+
			"volumes need the privileged level, so its DaemonSet would never start: %s", cfg.Namespace, l, PSSEnforceLabel, l, fixes)
	}
	var warned []string
	for _, label := range []string{PSSAuditLabel, PSSWarnLabel} {
		if l := level(label); restrictive(l) {
			warned = append(warned, fmt.Sprintf("%s=%s", label, l))
		}
	}
	if len(warned) > 0 {
		return warn("namespace %s has %s: the trust agent's hostPath volumes will be reported as violations, though admitted; to silence "+
			"them, %s", cfg.Namespace, strings.Join(warned, " and "), fixes)
	}
	if l := level(PSSEnforceLabel); l != "" {
		return ok("namespace %s enforces the Pod Security level %s, which admits the trust agent", cfg.Namespace, l)
	}
	return ok("namespace %s sets no Pod Security level (the cluster's default applies; the trust agent needs privileged)", cfg.Namespace)
}
