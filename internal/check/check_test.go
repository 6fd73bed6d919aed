package check_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/check"
	"github.com/connected-registry/connected-registry/internal/preflight"
	"github.com/connected-registry/connected-registry/internal/presync"
	"github.com/connected-registry/connected-registry/internal/reloader"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

type fixedClock struct{}

func (fixedClock) Now() time.Time { return now }

const (
	ns        = "connected-registry"
	release   = "cr"
	fullname  = "cr-connected-registry"
	clusterIP = "10.96.0.50"
	node      = "node-1"
)

// site is one release's objects and what its registry pod answers through the service proxy.
type site struct {
	objects []runtime.Object
	ca      *certs.Pair
	// probe is the registry's answer to the parent probe: status, error code, and whether it asks for credentials.
	probeStatus int
	probeCode   string
	probeAuth   bool
	// metrics is the metrics port's answer; empty means the Service has no metrics port.
	metrics string
	// acked is the fingerprint the node's Lease acknowledges; "current" for the published bundle's, "" for none.
	acked string
}

func newCA(t *testing.T) *certs.Pair {
	t.Helper()
	ca, err := certs.NewCA(rand.Reader, certs.Request{CommonName: "test CA", Key: certs.KeySpec{Algorithm: "ECDSA", Size: 256}, Duration: 5 * 365 * 24 * time.Hour}, now.Add(-time.Hour))
	require.NoError(t, err)
	return ca
}

func leaf(t *testing.T, ca *certs.Pair, ip string, from time.Time, d time.Duration) *certs.Pair {
	t.Helper()
	p, err := certs.Issue(rand.Reader, ca, certs.Request{IPs: []netip.Addr{netip.MustParseAddr(ip)}, DNSNames: []string{fullname},
		Key: certs.KeySpec{Algorithm: "ECDSA", Size: 256}, Duration: d}, from)
	require.NoError(t, err)
	return p
}

// healthy is a release whose every line passes.
func healthy(t *testing.T) *site {
	t.Helper()
	ca := newCA(t)
	l := leaf(t, ca, clusterIP, now.Add(-24*time.Hour), 90*24*time.Hour)
	one := int32(1)
	labels := map[string]string{"app.kubernetes.io/instance": release, "app.kubernetes.io/component": "registry"}
	agentLabels := map[string]string{"app.kubernetes.io/instance": release, "app.kubernetes.io/component": "trust-agent"}
	s := &site{ca: ca, probeStatus: http.StatusNotFound, probeCode: "MANIFEST_UNKNOWN", acked: "current",
		metrics: "# HELP x\n" + check.MetricParentUp + " 1\n" + check.MetricParentLastSuccess + fmt.Sprintf(" %d\n", now.Add(-time.Minute).Unix()) +
			check.MetricCacheUsed + " 1e9\n" + check.MetricCacheCapacity + " 1e10\n"}
	s.objects = []runtime.Object{
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: fullname, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "tls-reloader", Args: []string{
					"tls-reloader", "--namespace=" + ns, "--secret=" + fullname + "-tls", "--bundle-configmap=" + fullname + "-trust-bundle",
					"--daemonset=" + fullname + "-trust-agent", "--release=" + release, "--cluster-ip=" + clusterIP}}}}}},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 1, UpdatedReplicas: 1, Replicas: 1},
		},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fullname, Namespace: ns, Labels: labels}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fullname, Namespace: ns, Labels: labels},
			Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-tls", Namespace: ns}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": l.CertPEM, "tls.key": l.KeyPEM, "ca.crt": ca.CertPEM}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-trust-bundle", Namespace: ns,
			Annotations: map[string]string{bundle.FingerprintAnnotation: bundle.Fingerprint(ca.CertPEM)}},
			Data: map[string]string{bundle.Key: string(ca.CertPEM)}},
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-trust-agent", Namespace: ns},
			Spec:   appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: agentLabels}},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, NumberReady: 1}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-trust-agent-x1", Namespace: ns, Labels: agentLabels},
			Spec:   corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}},
	}
	return s
}

// with replaces the object of the same type and name.
func (s *site) with(o runtime.Object) *site {
	name := func(o runtime.Object) string {
		m, _ := o.(metav1.ObjectMetaAccessor)
		return fmt.Sprintf("%T/%s", o, m.GetObjectMeta().GetName())
	}
	for i, old := range s.objects {
		if name(old) == name(o) {
			s.objects[i] = o
			return s
		}
	}
	s.objects = append(s.objects, o)
	return s
}

func (s *site) find(kind any, name string) runtime.Object {
	for _, o := range s.objects {
		m, _ := o.(metav1.ObjectMetaAccessor)
		if fmt.Sprintf("%T", o) == fmt.Sprintf("%T", kind) && m.GetObjectMeta().GetName() == name {
			return o.DeepCopyObject()
		}
	}
	return nil
}

// run runs the checker against a fake clientset holding the site's objects, with an API server stand-in serving
// the service proxy paths of the registry's https and metrics ports.
func (s *site) run(t *testing.T) []check.Line {
	t.Helper()
	objects := s.objects
	if s.metrics != "" {
		// The chart's metrics Service: the reloader's port and the parent gate's, which exports the parent's
		// and the cache volume's metrics.
		objects = append(slices.Clone(objects), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fullname + "-metrics", Namespace: ns,
				Labels: map[string]string{"app.kubernetes.io/instance": release, "app.kubernetes.io/component": "metrics"}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: check.MetricsPort, Port: 9090}, {Name: check.GateMetricsPort, Port: 9091}}},
		})
	}
	client := fake.NewClientset(objects...)
	ctx := context.Background()
	if s.acked != "" {
		fp := s.acked
		if fp == "current" {
			fp = bundle.Fingerprint(s.ca.CertPEM)
		}
		require.NoError(t, (bundle.Acks{Client: client, Namespace: ns, Release: release}).Ack(ctx, node, fp))
	}
	mux := http.NewServeMux()
	base := "/api/v1/namespaces/" + ns + "/services/"
	mux.HandleFunc(base+"https:"+fullname+":https/proxy/v2/", func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/manifests/sha256:") {
			http.Error(w, "unexpected "+r.URL.Path, http.StatusTeapot)
			return
		}
		if s.probeAuth {
			w.Header().Set("WWW-Authenticate", `Bearer realm="https://10.96.0.50:5001/token"`)
		}
		w.WriteHeader(s.probeStatus)
		if s.probeCode != "" {
			fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"from the test"}]}`, s.probeCode)
		}
	})
	mux.HandleFunc(base+"http:"+fullname+"-metrics:metrics/proxy/metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE connected_registry_trust_nodes_desired gauge\nconnected_registry_trust_nodes_desired 1\n")
	})
	mux.HandleFunc(base+"http:"+fullname+"-metrics:gate-metrics/proxy/metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, s.metrics)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := &check.Checker{Client: client, Namespace: ns, Release: release, Clock: fixedClock{},
		Proxy: &check.Proxy{HTTP: srv.Client(), Host: srv.URL}}
	return c.Run(ctx)
}

func lineOf(t *testing.T, lines []check.Line, name string) check.Line {
	t.Helper()
	for _, l := range lines {
		if l.Check == name {
			return l
		}
	}
	require.Failf(t, "no line", "no %s line in %+v", name, lines)
	return check.Line{}
}

func TestHealthyReleaseIsGreen(t *testing.T) {
	t.Parallel()
	lines := healthy(t).run(t)
	require.False(t, check.Failed(lines))
	names := []string{}
	for _, l := range lines {
		require.Equal(t, check.OK, l.Status, "%s", l)
		require.Empty(t, l.Hint, "%s", l)
		names = append(names, l.Check)
	}
	require.Equal(t, []string{check.CheckRegistryReady, check.CheckCertificate, check.CheckParent, check.CheckNodeTrust, check.CheckSync, check.CheckCache, check.CheckAccess}, names)
	require.Equal(t, "✓ cache: 1.0 GB of 10.0 GB used (10 %)", lineOf(t, lines, check.CheckCache).String())
	require.Contains(t, lineOf(t, lines, check.CheckParent).Message, "the parent is reachable and accepts the sync token (probe of "+check.DefaultProbeRepository+": 404 Not Found: MANIFEST_UNKNOWN from the test); last successful answer 1m0s ago")
}

// TestLines changes one thing of a healthy release per case and expects its line to say so, with a hint.
func TestLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(t *testing.T, s *site)
		check  string
		status check.Status
		msg    string
		hint   string
	}{
		{
			name: "registry with no ready replica should fail naming the waiting container",
			change: func(t *testing.T, s *site) {
				d := s.find(&appsv1.Deployment{}, fullname).(*appsv1.Deployment)
				d.Status.ReadyReplicas = 0
				s.with(d)
				s.with(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-abc", Namespace: ns, Labels: d.Spec.Selector.MatchLabels},
					Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "registry",
						State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 5m0s"}}}}}})
			},
			check: check.CheckRegistryReady, status: check.Fail,
			msg:  "Deployment cr-connected-registry: 0 of 1 replicas ready: pod cr-connected-registry-abc, container registry is waiting (CrashLoopBackOff back-off 5m0s)",
			hint: "kubectl -n connected-registry describe deployment cr-connected-registry",
		},
		{
			name: "certificate without the ClusterIP should fail naming it",
			change: func(t *testing.T, s *site) {
				l := leaf(t, s.ca, "10.96.0.99", now.Add(-time.Hour), 90*24*time.Hour)
				sec := s.find(&corev1.Secret{}, fullname+"-tls").(*corev1.Secret)
				sec.Data["tls.crt"], sec.Data["tls.key"] = l.CertPEM, l.KeyPEM
				s.with(sec)
			},
			check: check.CheckCertificate, status: check.Fail,
			msg:  "does not hold the ClusterIP 10.96.0.50 in its subject alternative names (it holds IP:10.96.0.99, DNS:cr-connected-registry), so nodes pulling from 10.96.0.50:443 reject it",
			hint: "delete the Secret and run helm upgrade",
		},
		{
			name: "expired certificate should fail",
			change: func(t *testing.T, s *site) {
				l := leaf(t, s.ca, clusterIP, now.Add(-48*time.Hour), 24*time.Hour)
				sec := s.find(&corev1.Secret{}, fullname+"-tls").(*corev1.Secret)
				sec.Data["tls.crt"], sec.Data["tls.key"] = l.CertPEM, l.KeyPEM
				s.with(sec)
			},
			check: check.CheckCertificate, status: check.Fail, msg: "expired on 2026-12-04T12:00:00Z", hint: "delete the Secret and run helm upgrade",
		},
		{
			name: "certificate overdue for renewal (in the last third of its life) should warn",
			change: func(t *testing.T, s *site) {
				l := leaf(t, s.ca, clusterIP, now.Add(-80*24*time.Hour), 90*24*time.Hour)
				sec := s.find(&corev1.Secret{}, fullname+"-tls").(*corev1.Secret)
				sec.Data["tls.crt"], sec.Data["tls.key"] = l.CertPEM, l.KeyPEM
				s.with(sec)
			},
			check: check.CheckCertificate, status: check.Warn, msg: "expires on 2026-12-15T12:00:00Z (in 10 days), within the last third of its lifetime", hint: "delete the Secret and run helm upgrade",
		},
		{
			name: "certificate of another CA than the published one should fail",
			change: func(t *testing.T, s *site) {
				other := newCA(t)
				l := leaf(t, other, clusterIP, now.Add(-time.Hour), 90*24*time.Hour)
				sec := s.find(&corev1.Secret{}, fullname+"-tls").(*corev1.Secret)
				sec.Data["tls.crt"], sec.Data["tls.key"], sec.Data["ca.crt"] = l.CertPEM, l.KeyPEM, other.CertPEM
				s.with(sec)
			},
			check: check.CheckCertificate, status: check.Fail, msg: "does not chain to the CA published in ConfigMap cr-connected-registry-trust-bundle",
			hint: "the Secret's ca.crt differs from the published CA",
		},
		{
			name: "certificate that does not chain to its own ca.crt should fail",
			change: func(t *testing.T, s *site) {
				l := leaf(t, newCA(t), clusterIP, now.Add(-time.Hour), 90*24*time.Hour)
				sec := s.find(&corev1.Secret{}, fullname+"-tls").(*corev1.Secret)
				sec.Data["tls.crt"], sec.Data["tls.key"] = l.CertPEM, l.KeyPEM
				s.with(sec)
			},
			check: check.CheckCertificate, status: check.Fail, msg: "key tls.crt does not lead to the CA in Secret connected-registry/cr-connected-registry-tls key ca.crt",
			hint: "delete the Secret and run helm upgrade",
		},
		{
			name:   "missing TLS Secret should fail",
			change: func(t *testing.T, s *site) { s.objects = without(s.objects, fullname+"-tls") },
			check:  check.CheckCertificate, status: check.Fail, msg: "the TLS Secret connected-registry/cr-connected-registry-tls does not exist", hint: "certgen",
		},
		{
			name: "parent unreachable should fail with the gate's last success",
			change: func(t *testing.T, s *site) {
				s.probeStatus, s.probeCode = http.StatusBadGateway, ""
				s.metrics = check.MetricParentUp + " 0\n" + check.MetricParentLastSuccess + fmt.Sprintf(" %d\n", now.Add(-time.Hour).Unix())
			},
			check: check.CheckParent, status: check.Fail,
			msg:  "the parent cannot be reached through the registry (probe of connected-registry/check: 502 Bad Gateway); last successful answer 1h0m0s ago",
			hint: "kubectl -n connected-registry logs deployment/cr-connected-registry -c parent-gate",
		},
		{
			name:   "parent refusing the token should warn, naming the repository and the token",
			change: func(t *testing.T, s *site) { s.probeStatus, s.probeCode = http.StatusUnauthorized, "UNAUTHORIZED" },
			check:  check.CheckParent, status: check.Warn, msg: "refuses the probe of connected-registry/check (401 Unauthorized: UNAUTHORIZED from the test)",
			hint: "--probe-repository",
		},
		{
			name: "parent probe answered by the registry's own client auth falls back to the metrics",
			change: func(t *testing.T, s *site) {
				s.probeStatus, s.probeCode, s.probeAuth = http.StatusUnauthorized, "UNAUTHORIZED", true
				s.metrics = check.MetricParentUp + " 0\n"
			},
			check: check.CheckParent, status: check.Fail, msg: "connected_registry_parent_up is 0: the parent gate cannot reach the parent",
			hint: "parent-gate",
		},
		{
			name: "parent probe impossible and no metrics should warn unknown",
			change: func(t *testing.T, s *site) {
				s.probeStatus, s.probeCode, s.probeAuth = http.StatusUnauthorized, "UNAUTHORIZED", true
				s.metrics = ""
			},
			check: check.CheckParent, status: check.Warn, msg: "unknown: the probe could not ask the parent (the registry requires client credentials)",
			hint: "set metrics.enabled=true",
		},
		{
			name: "the pre-sync's repository is probed",
			change: func(t *testing.T, s *site) {
				s.with(&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-sync", Namespace: ns}, Spec: batchv1.CronJobSpec{
					JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "sync", Args: []string{"sync", `--repositories=[{"name":"library/app","tags":["v1"]}]`}}}}}}}}})
			},
			check: check.CheckParent, status: check.OK, msg: "probe of library/app: 404 Not Found",
		},
		{
			name:   "node without acknowledgement should fail naming it",
			change: func(t *testing.T, s *site) { s.acked = "" },
			check:  check.CheckNodeTrust, status: check.Fail,
			msg:  "0 of 1 nodes trust CA " + "%FP%" + ": node node-1 has not acknowledged any CA (no Lease cr-trust-ack-node-1)",
			hint: "kubectl -n connected-registry describe pod cr-connected-registry-trust-agent-x1",
		},
		{
			name:   "node that acknowledged an older CA should fail",
			change: func(t *testing.T, s *site) { s.acked = "0123456789abcdef" },
			check:  check.CheckNodeTrust, status: check.Fail, msg: "node node-1 acknowledged CA 0123456789abcdef, not the current %FP%", hint: "acknowledges within a minute",
		},
		{
			name: "node whose agent is not ready should fail with its latest warning",
			change: func(t *testing.T, s *site) {
				p := s.find(&corev1.Pod{}, fullname+"-trust-agent-x1").(*corev1.Pod)
				p.Status.Conditions[0].Status = corev1.ConditionFalse
				s.with(p)
				s.with(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "ev1", Namespace: ns}, Type: corev1.EventTypeWarning, Reason: "ContainerdIgnoresTrust",
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: p.Name}, Message: "node node-1: containerd ignores certs.d",
					LastTimestamp: metav1.NewTime(now)})
			},
			check: check.CheckNodeTrust, status: check.Fail,
			msg: "node node-1: its agent cr-connected-registry-trust-agent-x1 is not ready: node node-1: containerd ignores certs.d", hint: "describe pod",
		},
		{
			name: "a selected node without an agent should fail",
			change: func(t *testing.T, s *site) {
				ds := s.find(&appsv1.DaemonSet{}, fullname+"-trust-agent").(*appsv1.DaemonSet)
				ds.Status.DesiredNumberScheduled = 2
				s.with(ds)
			},
			check: check.CheckNodeTrust, status: check.Fail, msg: "1 of 2 selected nodes run an agent", hint: "describe daemonset",
		},
		{
			name: "trust distribution off should pass and say so",
			change: func(t *testing.T, s *site) {
				d := s.find(&appsv1.Deployment{}, fullname).(*appsv1.Deployment)
				c := &d.Spec.Template.Spec.InitContainers[0]
				c.Args = without2(c.Args, "--daemonset=")
				s.with(d)
			},
			check: check.CheckNodeTrust, status: check.OK, msg: "trust distribution is off",
		},
		{
			name:   "failed sync should fail naming the repository",
			change: func(t *testing.T, s *site) { s.with(syncStatus(t, presync.ResultFailed, "parent unreachable")) },
			check:  check.CheckSync, status: check.Fail, msg: "failed: 0 tags synced", hint: "kubectl -n connected-registry get configmap cr-connected-registry-sync-status",
		},
		{
			name: "incomplete sync should warn naming the repository",
			change: func(t *testing.T, s *site) {
				s.with(syncStatus(t, presync.ResultIncomplete, "the parent refuses the sync token access to it"))
			},
			check: check.CheckSync, status: check.Warn, msg: "library/app: the parent refuses the sync token access to it", hint: "summary",
		},
		{
			name:   "complete sync should pass",
			change: func(t *testing.T, s *site) { s.with(syncStatus(t, presync.ResultComplete, "")) },
			check:  check.CheckSync, status: check.OK, msg: "complete: 0 tags synced, 0 unchanged, 0 failed, 0 pending, 0 B fetched",
		},
		{
			name: "sync that never ran should warn",
			change: func(t *testing.T, s *site) {
				s.with(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-sync-status", Namespace: ns}})
			},
			check: check.CheckSync, status: check.Warn, msg: "no sync has run yet", hint: "create job --from=cronjob/cr-connected-registry-sync",
		},
		{
			name: "cache above 85 % should warn",
			change: func(t *testing.T, s *site) {
				s.metrics = check.MetricCacheUsed + " 9e9\n" + check.MetricCacheCapacity + " 1e10\n"
			},
			check: check.CheckCache, status: check.Warn, msg: "9.0 GB of 10.0 GB used (90 %)", hint: "pvc.storageRequest",
		},
		{
			name: "cache above 95 % should fail",
			change: func(t *testing.T, s *site) {
				s.metrics = check.MetricCacheUsed + " 9.9e9\n" + check.MetricCacheCapacity + " 1e10\n"
			},
			check: check.CheckCache, status: check.Fail, msg: "(99 %)", hint: "a full volume fails every pull of new content",
		},
		{
			name:   "cache without metrics should warn unknown",
			change: func(t *testing.T, s *site) { s.metrics = "" },
			check:  check.CheckCache, status: check.Warn, msg: "unknown: the Service has no port named metrics (metrics.enabled=false)", hint: "set metrics.enabled=true",
		},
		{
			name:   "anonymous pulls without a NetworkPolicy should warn",
			change: func(t *testing.T, s *site) { s.objects = withoutKind(s.objects, &networkingv1.NetworkPolicy{}) },
			check:  check.CheckAccess, status: check.Warn,
			msg:  "pulls are anonymous, and anything that reaches 10.96.0.50:443 in the cluster network may ask, /v2/_catalog included",
			hint: "clientTokens.enabled=true",
		},
		{
			name: "htpasswd without a NetworkPolicy should warn",
			change: func(t *testing.T, s *site) {
				s.objects = withoutKind(s.objects, &networkingv1.NetworkPolicy{})
				d := s.find(&appsv1.Deployment{}, fullname).(*appsv1.Deployment)
				d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes, corev1.Volume{Name: "client-auth"})
				s.with(d)
			},
			check: check.CheckAccess, status: check.Warn, msg: "pulls need htpasswd credentials (registry.clientAuthSecret), which let every user pull every repository, and anything that reaches",
			hint: "networkPolicy.enabled=true",
		},
		{
			name: "client tokens should pass",
			change: func(t *testing.T, s *site) {
				s.objects = withoutKind(s.objects, &networkingv1.NetworkPolicy{})
				d := s.find(&appsv1.Deployment{}, fullname).(*appsv1.Deployment)
				d.Spec.Template.Spec.InitContainers = append(d.Spec.Template.Spec.InitContainers, corev1.Container{Name: "token-server"})
				s.with(d)
			},
			check: check.CheckAccess, status: check.OK, msg: "pulls need a client token",
		},
		{
			name: "a preflight warning Event should be a warning line",
			change: func(t *testing.T, s *site) {
				s.with(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "pf1", Namespace: ns}, Type: corev1.EventTypeWarning, Reason: preflight.ReasonWarning,
					InvolvedObject: corev1.ObjectReference{Kind: "Service", Name: fullname}, Message: "tls: warn: the certificate expires in 10 days: renew it soon",
					LastTimestamp: metav1.NewTime(now)})
			},
			check: check.CheckWarnings, status: check.Warn,
			msg:  "PreflightWarning service/cr-connected-registry: tls: warn: the certificate expires in 10 days: renew it soon",
			hint: "the preflight warned at the last install or upgrade",
		},
		{
			name: "a refused certificate Event should be a warning line",
			change: func(t *testing.T, s *site) {
				s.with(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "rf1", Namespace: ns}, Type: corev1.EventTypeWarning, Reason: reloader.ReasonRefused,
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: fullname + "-abc"}, Message: "secret x: the certificate (serial 1) is not installed: it expired",
					LastTimestamp: metav1.NewTime(now)})
			},
			check: check.CheckWarnings, status: check.Warn, msg: "CertificateRefused pod/cr-connected-registry-abc: secret x", hint: "keeps serving its previous certificate",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := healthy(t)
			tc.change(t, s)
			lines := s.run(t)
			l := lineOf(t, lines, tc.check)
			require.Equal(t, tc.status, l.Status, "%s", l)
			require.Contains(t, l.Message, strings.ReplaceAll(tc.msg, "%FP%", bundle.Fingerprint(s.ca.CertPEM)))
			if tc.status != check.OK {
				require.Contains(t, l.Hint, tc.hint)
			} else {
				require.Empty(t, l.Hint)
			}
			require.Equal(t, tc.status == check.Fail, check.Failed(lines))
		})
	}
}

func TestNoRelease(t *testing.T) {
	t.Parallel()
	c := &check.Checker{Client: fake.NewClientset(), Namespace: ns, Release: "other"}
	lines := c.Run(context.Background())
	require.Len(t, lines, 1)
	require.Equal(t, "× registry-ready: release other has no registry Deployment in namespace connected-registry\n    hint: check the release name and namespace (helm list -A); this command looks for the Deployment labelled app.kubernetes.io/instance=other,app.kubernetes.io/component=registry in namespace connected-registry", lines[0].String())
	require.True(t, check.Failed(lines))
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	m, err := check.ParseMetrics([]byte("# HELP a\n# TYPE a gauge\na 1\n# TYPE b counter\nb{x=\"1\",y=\"}\"} 2 1700000000\nb{x=\"2\"} 3\nc NaN\nd 1.5e3\n"))
	require.NoError(t, err)
	require.Equal(t, 1.0, m["a"])
	require.Equal(t, 5.0, m["b"])
	require.Equal(t, 1500.0, m["d"])
	require.True(t, m.Has("c"))
	require.False(t, m.Has("e"))
	_, err = check.ParseMetrics([]byte("a 1\nbad line\n"))
	require.Error(t, err)
}

func syncStatus(t *testing.T, result, repoError string) *corev1.ConfigMap {
	t.Helper()
	st := &presync.Status{Schedule: "0 2 * * *", Run: presync.Run{Started: now.Add(-time.Hour), Result: result},
		Repositories: []*presync.RepositoryStatus{{Name: "library/app", Error: repoError}}}
	data, err := st.JSON()
	require.NoError(t, err)
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-sync-status", Namespace: ns},
		Data: map[string]string{presync.StatusKey: string(data)}}
}

func without(objects []runtime.Object, name string) []runtime.Object {
	var out []runtime.Object
	for _, o := range objects {
		if m, _ := o.(metav1.ObjectMetaAccessor); m.GetObjectMeta().GetName() != name {
			out = append(out, o)
		}
	}
	return out
}

func without2(args []string, prefix string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, prefix) {
			out = append(out, a)
		}
	}
	return out
}

func withoutKind(objects []runtime.Object, kind runtime.Object) []runtime.Object {
	var out []runtime.Object
	for _, o := range objects {
		if fmt.Sprintf("%T", o) != fmt.Sprintf("%T", kind) {
			out = append(out, o)
		}
	}
	return out
}
