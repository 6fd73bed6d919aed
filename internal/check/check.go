// Package check answers, after install, the operator's questions about one release in one screen, in the style of
// `linkerd check`: is the registry serving, is its certificate right, can it reach its parent, does every node
// trust it, how is the pre-sync doing, how full is the cache, and what did the preflight warn about. Each answer is
// one Line with a verdict (ok, warn or fail) and, for every problem, a hint that says what to do.
//
// Everything is read through the API server: the objects through kubernetes.Interface, with read access in the
// release's namespace only, and what only the registry pod knows (its metrics, the parent's verdict) through the
// API server's service proxy (Proxy). The workstation needs no network path to the registry or the nodes.
//
// The names of the release's objects are not recomputed from values: the registry Deployment is found by the
// release's labels, and the TLS Secret, the trust bundle ConfigMap, the trust agents' DaemonSet and the ClusterIP
// are read from its tls-reloader's arguments, as the chart wrote them.
package check

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/connected-registry/connected-registry/internal/clock"
)

// Status is a line's verdict.
type Status string

// Verdicts. Only Fail makes the command exit non-zero.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Glyph is how the text output marks a verdict, as `linkerd check` does.
func (s Status) Glyph() string {
	switch s {
	case OK:
		return "✓"
	case Warn:
		return "‼"
	}
	return "×"
}

// Line is one answer.
type Line struct {
	// Check names what was checked, like registry-ready.
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	// Hint says what to do; set on every warning and failure.
	Hint string `json:"hint,omitempty"`
}

func (l Line) String() string {
	s := fmt.Sprintf("%s %s: %s", l.Status.Glyph(), l.Check, l.Message)
	if l.Hint != "" {
		s += "\n    hint: " + l.Hint
	}
	return s
}

// Failed reports whether any line failed.
func Failed(lines []Line) bool {
	for _, l := range lines {
		if l.Status == Fail {
			return true
		}
	}
	return false
}

// Names of the checks, in the order Run reports them.
const (
	CheckRegistryReady = "registry-ready"
	CheckCertificate   = "certificate"
	CheckParent        = "parent"
	CheckNodeTrust     = "node-trust"
	CheckSync          = "sync"
	CheckCache         = "cache"
	CheckAccess        = "access"
	CheckWarnings      = "warning"
)

// Checker checks one release.
type Checker struct {
	Client    kubernetes.Interface
	Namespace string
	// Release is the Helm release's name (the app.kubernetes.io/instance label).
	Release string
	// Proxy reaches the registry pod's ports through the API server; nil skips what needs it.
	Proxy *Proxy
	// ProbeRepository is the repository the parent probe asks for when the metrics cannot tell; empty takes the
	// first repository of the pre-sync, else DefaultProbeRepository.
	ProbeRepository string
	// Clock judges certificates and ages; nil is the real time.
	Clock clock.Clock

	target  *target
	metrics *scrape
}

// target is what the checks look at, found once.
type target struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	// From the tls-reloader's arguments.
	tlsSecret, bundle, daemonSet, clusterIP string
}

// Run runs every check and returns one line each, plus one line per warning recorded about the release.
func (c *Checker) Run(ctx context.Context) []Line {
	t, err := c.find(ctx)
	if err != nil {
		return []Line{{Check: CheckRegistryReady, Status: Fail, Message: err.Error(),
			Hint: fmt.Sprintf("check the release name and namespace (helm list -A); this command looks for the Deployment labelled app.kubernetes.io/instance=%s,app.kubernetes.io/component=registry in namespace %s", c.Release, c.Namespace)}}
	}
	c.target = t
	lines := []Line{
		c.registryReady(ctx),
		c.certificate(ctx),
		c.parent(ctx),
		c.nodeTrust(ctx),
		c.sync(ctx),
		c.cache(ctx),
		c.access(ctx),
	}
	return append(lines, c.warnings(ctx)...)
}

func (c *Checker) now() time.Time { return clock.Or(c.Clock).Now() }

// find locates the release's registry Deployment and Service and reads the names the chart gave the tls-reloader.
func (c *Checker) find(ctx context.Context) (*target, error) {
	sel := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/instance": c.Release, "app.kubernetes.io/component": "registry"}).String()
	list, err := c.Client.AppsV1().Deployments(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing the Deployments of release %s in namespace %s: %w", c.Release, c.Namespace, err)
	}
	if len(list.Items) == 0 {
		return nil, fmt.Errorf("release %s has no registry Deployment in namespace %s", c.Release, c.Namespace)
	}
	t := &target{deployment: &list.Items[0]}
	for _, ct := range append(append([]corev1.Container{}, t.deployment.Spec.Template.Spec.InitContainers...), t.deployment.Spec.Template.Spec.Containers...) {
		if ct.Name != "tls-reloader" {
			continue
		}
		for _, a := range ct.Args {
			k, v, _ := strings.Cut(a, "=")
			switch k {
			case "--secret":
				t.tlsSecret = v
			case "--bundle-configmap":
				t.bundle = v
			case "--daemonset":
				t.daemonSet = v
			case "--cluster-ip":
				t.clusterIP = v
			}
		}
	}
	svc, err := c.Client.CoreV1().Services(c.Namespace).Get(ctx, t.deployment.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("reading Service %s/%s: %w", c.Namespace, t.deployment.Name, err)
	default:
		t.service = svc
		if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.clusterIP = svc.Spec.ClusterIP
		}
	}
	return t, nil
}

// line builds a line.
func line(check string, st Status, hint, format string, args ...any) Line {
	return Line{Check: check, Status: st, Message: fmt.Sprintf(format, args...), Hint: hint}
}
