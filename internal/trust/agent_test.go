package trust_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/connected-registry/connected-registry/internal/trust"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

const (
	testNS        = "connected-registry"
	testBundle    = "cr-connected-registry-trust-bundle"
	agentHost     = "10.96.0.50:443"
	agentNode     = "worker-1"
	hostCertsDir  = "/etc/containerd/certs.d"
	hostConfig    = "/etc/containerd/config.toml"
	configNoPath  = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
	configOurPath = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"
	configElse    = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/var/lib/containerd/hosts\"\n"
	ignoresReason = `containerd config /etc/containerd/config.toml (schema 2) sets no config_path in [plugins."io.containerd.grpc.v1.cri".registry]: containerd ignores certs.d; add config_path = "/etc/containerd/certs.d" there and restart containerd once`
	usesReason    = `containerd config /etc/containerd/config.toml (schema 2) reads /etc/containerd/certs.d (config_path "/etc/containerd/certs.d")`
)

// event is one call of the agent's EventSink.
type event struct {
	Warning bool
	Reason  string
	Message string
}

type eventRecorder struct {
	mu     sync.Mutex
	events []event
}

func (r *eventRecorder) Event(_ context.Context, warning bool, reason, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{Warning: warning, Reason: reason, Message: message})
}

// take returns the events recorded since the last take.
func (r *eventRecorder) take() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

type agent struct {
	*trust.Agent
	client   *fake.Clientset
	events   *eventRecorder
	config   string
	caFolder string // certs.d/<host> as the agent's container sees it
}

var testEpoch = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// newAgent builds the agent as the chart's DaemonSet runs it on node, reading the bundle through client.
func newAgent(t *testing.T, client *fake.Clientset, node string) *agent {
	t.Helper()
	dir := t.TempDir()
	certsDir := filepath.Join(dir, "certs.d")
	require.NoError(t, os.Mkdir(certsDir, 0o755))
	a := &agent{client: client, events: &eventRecorder{}, config: filepath.Join(dir, "config.toml"), caFolder: filepath.Join(certsDir, agentHost)}
	c := &clock{t: testEpoch}
	a.Agent = &trust.Agent{
		Entry: &trust.Entry{Dir: certsDir, HostDir: hostCertsDir, Host: agentHost, Owner: "connected-registry/cr",
			PreviousCAGrace: 24 * time.Hour, Now: c.Now},
		NodeName:             node,
		Bundle:               &bundle.ConfigMap{Client: client, Namespace: testNS, Name: testBundle},
		Acks:                 &bundle.Acks{Client: client, Namespace: testNS, Release: "cr"},
		ContainerdConfig:     a.config,
		HostContainerdConfig: hostConfig,
		Interval:             2 * time.Second,
		Events:               a.events,
	}
	return a
}

// bundleOf is the trust bundle ConfigMap holding ca, or empty as the chart renders it when ca is nil.
func bundleOf(ca []byte) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: testBundle, Namespace: testNS}}
	if ca != nil {
		cm.Data = map[string]string{bundle.Key: string(ca)}
	}
	return cm
}

func (a *agent) setConfig(t *testing.T, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(a.config, []byte(content), 0o644))
}

func (a *agent) sync(t *testing.T) string {
	t.Helper()
	return a.Sync(context.Background())
}

// get serves path through the agent's health handler.
func (a *agent) get(t *testing.T, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func (a *agent) setBundle(t *testing.T, ca []byte) {
	t.Helper()
	cm, err := a.client.CoreV1().ConfigMaps(testNS).Get(context.Background(), testBundle, metav1.GetOptions{})
	require.NoError(t, err)
	cm.Data = map[string]string{bundle.Key: string(ca)}
	_, err = a.client.CoreV1().ConfigMaps(testNS).Update(context.Background(), cm, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// acks are the acknowledgement Leases, node -> fingerprint; the bundle ConfigMap holds none.
func (a *agent) acks(t *testing.T) map[string]string {
	t.Helper()
	cm, err := a.client.CoreV1().ConfigMaps(testNS).Get(context.Background(), testBundle, metav1.GetOptions{})
	require.NoError(t, err)
	for k := range cm.Annotations {
		require.False(t, strings.HasPrefix(k, bundle.AckAnnotationPrefix), "the agent writes nothing into the bundle: %s", k)
	}
	out, err := (bundle.Acks{Client: a.client, Namespace: testNS, Release: "cr"}).List(context.Background())
	require.NoError(t, err)
	return out
}

// ackState is what the agent's node's Lease acknowledges.
func (a *agent) ackState(t *testing.T) bundle.AckState {
	t.Helper()
	st, err := (bundle.Acks{Client: a.client, Namespace: testNS, Release: "cr"}).States(context.Background())
	require.NoError(t, err)
	return st[agentNode]
}

// writes lists the client's calls other than reads, as "verb resource".
func writes(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		if v := a.GetVerb(); v != "get" && v != "list" {
			out = append(out, v+" "+a.GetResource().Resource)
		}
	}
	return out
}

func TestTrustAgentReadiness(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testEpoch, "connected-registry CA")
	fp := trust.Fingerprint(ca)
	holds := hostCertsDir + "/" + agentHost + " holds CA " + fp
	tests := []struct {
		name       string
		bundle     *corev1.ConfigMap
		config     string
		wantReady  bool
		wantReason string
		wantEvents []event
		// wantInstalled is whether ca.crt and hosts.toml are on the node afterwards, and acknowledged.
		wantInstalled bool
	}{
		{
			name:       "a ConfigMap without ca.crt should be not ready with CAUnavailable",
			bundle:     bundleOf(nil),
			config:     configOurPath,
			wantReason: "CAUnavailable: reading the registry's CA from ConfigMap connected-registry/cr-connected-registry-trust-bundle: ConfigMap cr-connected-registry-trust-bundle has no ca.crt yet: the registry pod publishes it when it starts",
			wantEvents: []event{{Warning: true, Reason: "CAUnavailable", Message: "node worker-1: reading the registry's CA from ConfigMap connected-registry/cr-connected-registry-trust-bundle: ConfigMap cr-connected-registry-trust-bundle has no ca.crt yet: the registry pod publishes it when it starts"}},
		},
		{
			name:       "a missing ConfigMap should be not ready with CAUnavailable",
			config:     configOurPath,
			wantReason: `CAUnavailable: reading the registry's CA from ConfigMap connected-registry/cr-connected-registry-trust-bundle: configmaps "cr-connected-registry-trust-bundle" not found`,
			wantEvents: []event{{Warning: true, Reason: "CAUnavailable", Message: `node worker-1: reading the registry's CA from ConfigMap connected-registry/cr-connected-registry-trust-bundle: configmaps "cr-connected-registry-trust-bundle" not found`}},
		},
		{
			name:          "a schema 2 config without config_path should install the CA and be not ready with ContainerdIgnoresTrust",
			bundle:        bundleOf(ca),
			config:        configNoPath,
			wantInstalled: true,
			wantReason:    "ContainerdIgnoresTrust: " + holds + ", but containerd will not use it (no): " + ignoresReason,
			wantEvents:    []event{{Reason: "TrustWritten"}, {Warning: true, Reason: "ContainerdIgnoresTrust", Message: "node worker-1: " + holds + ", but containerd will not use it (no): " + ignoresReason}},
		},
		{
			name:          "a config_path naming another directory should be not ready with ContainerdIgnoresTrust",
			bundle:        bundleOf(ca),
			config:        configElse,
			wantInstalled: true,
			wantReason: "ContainerdIgnoresTrust: " + holds + `, but containerd will not use it (no): containerd config /etc/containerd/config.toml (schema 2) reads config_path "/var/lib/containerd/hosts", which does not hold /etc/containerd/certs.d: ` +
				`set trustDistribution.certsDir to one of those directories, or add /etc/containerd/certs.d to config_path in [plugins."io.containerd.grpc.v1.cri".registry]`,
			wantEvents: []event{{Reason: "TrustWritten"}, {Warning: true, Reason: "ContainerdIgnoresTrust"}},
		},
		{
			name:          "a config_path naming the host certs.d directory should be ready with TrustInPlace",
			bundle:        bundleOf(ca),
			config:        configOurPath,
			wantInstalled: true,
			wantReady:     true,
			wantReason:    "TrustInPlace: " + holds + " and containerd uses it: " + usesReason,
			wantEvents:    []event{{Reason: "TrustWritten"}, {Reason: "TrustInPlace", Message: "node worker-1: " + holds + " and containerd uses it: " + usesReason}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var objs []runtime.Object
			if tc.bundle != nil {
				objs = append(objs, tc.bundle)
			}
			a := newAgent(t, fake.NewClientset(objs...), agentNode)
			a.setConfig(t, tc.config)
			code, body := a.get(t, "/readyz")
			require.Equal(t, http.StatusServiceUnavailable, code, "not ready before the first pass")
			require.Equal(t, "\n", body)

			require.Equal(t, tc.wantReason, a.sync(t))
			ready, reason := a.Ready()
			require.Equal(t, tc.wantReady, ready)
			require.Equal(t, tc.wantReason, reason)
			code, body = a.get(t, "/readyz")
			require.Equal(t, map[bool]int{true: http.StatusOK, false: http.StatusServiceUnavailable}[tc.wantReady], code)
			require.Equal(t, tc.wantReason+"\n", body)
			code, body = a.get(t, "/healthz")
			require.Equal(t, http.StatusOK, code, "liveness does not depend on trust")
			require.Equal(t, "ok\n", body)

			got := a.events.take()
			require.Len(t, got, len(tc.wantEvents))
			for i, want := range tc.wantEvents {
				require.Equal(t, want.Warning, got[i].Warning, got[i])
				require.Equal(t, want.Reason, got[i].Reason, got[i])
				if want.Message != "" {
					require.Equal(t, want.Message, got[i].Message)
				}
			}

			onNode, err := os.ReadFile(filepath.Join(a.caFolder, "ca.crt"))
			if !tc.wantInstalled {
				require.ErrorIs(t, err, os.ErrNotExist)
				require.Empty(t, writes(a.client), "nothing to acknowledge")
				return
			}
			require.NoError(t, err)
			require.Equal(t, string(ca), string(onNode))
			hosts, err := os.ReadFile(filepath.Join(a.caFolder, "hosts.toml"))
			require.NoError(t, err)
			require.Contains(t, string(hosts), `ca = "/etc/containerd/certs.d/10.96.0.50:443/ca.crt"`, "hosts.toml names the CA by its path on the node")
			require.Equal(t, "node worker-1: wrote /etc/containerd/certs.d/10.96.0.50:443/ca.crt, /etc/containerd/certs.d/10.96.0.50:443/hosts.toml (CA "+fp+")", got[0].Message,
				"the Event names the files by their paths on the node")
			require.Equal(t, []string{"create leases"}, writes(a.client), "the agent writes its own Lease, never the bundle")
			require.Equal(t, map[string]string{agentNode: bundle.Fingerprint(ca)}, a.acks(t),
				"the agent acknowledges the bundle even when containerd ignores it: the CA is installed")
		})
	}
}

func TestTrustAgentReportsStateChangesOnly(t *testing.T) {
	t.Parallel()
	ca, next := newCA(t, testEpoch, "connected-registry CA"), newCA(t, testEpoch, "next CA")
	a := newAgent(t, fake.NewClientset(bundleOf(nil)), agentNode)
	a.setConfig(t, configNoPath)
	reasons := func() []string {
		var out []string
		for _, e := range a.events.take() {
			out = append(out, e.Reason)
		}
		return out
	}

	a.sync(t)
	require.Equal(t, []string{"CAUnavailable"}, reasons())
	a.sync(t)
	require.Empty(t, reasons(), "the same state is not reported twice")

	// The registry pod publishes its CA.
	a.setBundle(t, ca)
	a.client.ClearActions()
	a.sync(t)
	require.Equal(t, []string{"TrustWritten", "ContainerdIgnoresTrust"}, reasons())
	require.Equal(t, []string{"create leases"}, writes(a.client))
	require.Equal(t, bundle.ContainerdIgnores, a.ackState(t).Containerd, "the Lease says containerd ignores the entry")
	a.client.ClearActions()
	a.sync(t)
	require.Empty(t, reasons())
	require.Empty(t, writes(a.client), "an acknowledged bundle is not acknowledged again")

	// The administrator sets config_path.
	a.setConfig(t, configOurPath)
	a.client.ClearActions()
	a.sync(t)
	require.Equal(t, []string{"TrustInPlace"}, reasons(), "nothing is written again on the node, only the state changes")
	require.Equal(t, []string{"update leases"}, writes(a.client), "the Lease records that containerd now uses the entry")
	require.Equal(t, bundle.AckState{Fingerprint: bundle.Fingerprint(ca), Containerd: bundle.ContainerdUses}, a.ackState(t))
	a.client.ClearActions()
	a.sync(t)
	require.Empty(t, reasons())
	require.Empty(t, writes(a.client))
	code, _ := a.get(t, "/readyz")
	require.Equal(t, http.StatusOK, code)

	// A new CA: written, acknowledged, and the state names it.
	a.setBundle(t, next)
	a.client.ClearActions()
	state := a.sync(t)
	require.Equal(t, []string{"TrustWritten", "TrustInPlace"}, reasons())
	require.Contains(t, state, "holds CA "+trust.Fingerprint(next))
	require.Equal(t, []string{"update leases"}, writes(a.client))
	require.Equal(t, map[string]string{agentNode: bundle.Fingerprint(next)}, a.acks(t))
	onNode, err := os.ReadFile(filepath.Join(a.caFolder, "ca.crt"))
	require.NoError(t, err)
	require.Equal(t, string(next)+string(ca), string(onNode), "the replaced CA stays trusted for --previous-ca-grace")

	// The ConfigMap loses its CA: the entry stays on the node, readiness goes.
	a.setBundle(t, nil)
	a.sync(t)
	require.Equal(t, []string{"CAUnavailable"}, reasons())
	code, _ = a.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	_, err = os.Stat(filepath.Join(a.caFolder, "ca.crt"))
	require.NoError(t, err)
}

func TestTrustAgentRetriesAFailedAcknowledgement(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testEpoch, "connected-registry CA")
	client := fake.NewClientset(bundleOf(ca))
	failures := 1
	client.PrependReactor("create", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failures == 0 {
			return false, nil, nil
		}
		failures--
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "x", errors.New("admission"))
	})
	// A node name too long for a Lease name as it is.
	node := "worker-" + strings.Repeat("pool-a-", 40)
	a := newAgent(t, client, node)
	a.setConfig(t, configOurPath)

	a.sync(t)
	require.Empty(t, a.acks(t), "the create was refused")
	ready, _ := a.Ready()
	require.True(t, ready, "readiness is about the node, not about the acknowledgement")

	a.sync(t)
	require.Equal(t, map[string]string{node: bundle.Fingerprint(ca)}, a.acks(t), "the next pass acknowledges")
	name := (bundle.Acks{Release: "cr"}).Name(node)
	require.Empty(t, validation.IsDNS1123Subdomain(name), name)
	require.Equal(t, []string{"create leases", "create leases"}, writes(a.client))

	// Someone deletes the Lease: the agent writes it again once it reads it again.
	require.NoError(t, client.CoordinationV1().Leases(testNS).Delete(context.Background(), name, metav1.DeleteOptions{}))
	a.sync(t)
	require.Empty(t, a.acks(t), "read again only after a while")
}
