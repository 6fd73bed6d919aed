package reloader

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

const (
	testNS        = "connected-registry"
	testTLSSecret = "cr-connected-registry-tls"
	testBundle    = "cr-connected-registry-trust-bundle"
	testAgentDS   = "cr-connected-registry-trust-agent"
	testRelease   = "cr"
)

var testEpoch = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// stepClock is a clock the test moves by hand.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *stepClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func issueCA(t *testing.T, name string) *certs.Pair {
	t.Helper()
	ca, err := certs.NewCA(rand.Reader, certs.Request{CommonName: name, Key: certs.DefaultKeySpec, Duration: certs.DefaultCADuration}, testEpoch)
	require.NoError(t, err)
	return ca
}

func issueLeaf(t *testing.T, ca *certs.Pair) *certs.Pair {
	t.Helper()
	return issueLeafAt(t, ca, testEpoch, "10.96.0.50")
}

// issueLeafAt issues a serving certificate valid from now for the default leaf duration, for ip.
func issueLeafAt(t *testing.T, ca *certs.Pair, now time.Time, ip string) *certs.Pair {
	t.Helper()
	leaf, err := certs.Issue(rand.Reader, ca, certs.Request{IPs: []netip.Addr{netip.MustParseAddr(ip)},
		DNSNames: []string{"cr-connected-registry"}, Key: certs.DefaultKeySpec, Duration: certs.DefaultLeafDuration}, now)
	require.NoError(t, err)
	return leaf
}

func tlsSecretOf(ca, leaf *certs.Pair) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testTLSSecret, Namespace: testNS}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.CertPEM}}
}

// bundleOf is the trust bundle ConfigMap holding ca (empty as the chart renders it when ca is nil), with acks as
// node -> fingerprint.
func bundleOf(ca []byte, acks map[string]string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: testBundle, Namespace: testNS}}
	if ca != nil {
		cm.Data = map[string]string{bundle.Key: string(ca)}
		cm.Annotations = map[string]string{bundle.FingerprintAnnotation: bundle.Fingerprint(ca)}
	}
	for node, fp := range acks {
		if cm.Annotations == nil {
			cm.Annotations = map[string]string{}
		}
		cm.Annotations[bundle.AckAnnotation(node)] = fp
	}
	return cm
}

// leasesOf are the agents' acknowledgement Leases, node -> fingerprint, written as the agents write them.
func leasesOf(t *testing.T, acks map[string]string) []runtime.Object {
	t.Helper()
	client := fake.NewClientset()
	a := bundle.Acks{Client: client, Namespace: testNS, Release: testRelease}
	var out []runtime.Object
	for node, fp := range acks {
		require.NoError(t, a.Ack(context.Background(), node, fp))
		l, err := client.CoordinationV1().Leases(testNS).Get(context.Background(), a.Name(node), metav1.GetOptions{})
		require.NoError(t, err)
		out = append(out, l)
	}
	return out
}

func agentDaemonSet(desired int32) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: testAgentDS, Namespace: testNS},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: desired}}
}

// closedAddr is a local address nothing listens on: the registry is not serving.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// fakeRegistry serves a certificate over real TLS, as the registry does; serve switches it.
type fakeRegistry struct {
	addr string
	mu   sync.Mutex
	cert tls.Certificate
}

func serveTLS(t *testing.T, pair *certs.Pair) *fakeRegistry {
	t.Helper()
	r := &fakeRegistry{}
	r.serve(t, pair)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			c := r.cert
			return &c, nil
		}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); _ = c.Close() }()
		}
	}()
	r.addr = ln.Addr().String()
	return r
}

func (r *fakeRegistry) serve(t *testing.T, pair *certs.Pair) {
	t.Helper()
	c, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	require.NoError(t, err)
	r.mu.Lock()
	r.cert = c
	r.mu.Unlock()
}

type testReloader struct {
	*Reloader
	client *fake.Clientset
	clock  *stepClock
	events *events
}

// events records what the reloader reports.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) Event(_ context.Context, warning bool, reason, message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	kind := "Normal"
	if warning {
		kind = "Warning"
	}
	e.list = append(e.list, kind+" "+reason+": "+message)
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.list
	e.list = nil
	return out
}

// newReloader builds the sidecar as the chart runs it, on client, writing into a fresh TLSDir.
func newReloader(t *testing.T, client *fake.Clientset, mutate ...func(*Reloader)) *testReloader {
	t.Helper()
	r := &testReloader{client: client, clock: &stepClock{t: testEpoch}, events: &events{}}
	r.Reloader = &Reloader{
		Client: client, Namespace: testNS, RequestTimeout: time.Minute, Clock: r.clock,
		Secret: testTLSSecret, Bundle: testBundle, DaemonSet: testAgentDS, Release: testRelease, TLSDir: t.TempDir(),
		ClusterIP: netip.MustParseAddr("10.96.0.50"), Interval: 2 * time.Second, TrustWait: 5 * time.Minute,
		Events: r.events,
	}
	for _, f := range mutate {
		f(r.Reloader)
	}
	return r
}

// written reads what the registry would start with.
func (r *testReloader) written(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	c, err := os.ReadFile(filepath.Join(r.TLSDir, "tls.crt"))
	require.NoError(t, err)
	k, err := os.ReadFile(filepath.Join(r.TLSDir, "tls.key"))
	require.NoError(t, err)
	return string(c), string(k)
}

func (r *testReloader) setSecret(t *testing.T, s *corev1.Secret) {
	t.Helper()
	_, err := r.client.CoreV1().Secrets(testNS).Update(context.Background(), s, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func (r *testReloader) bundle(t *testing.T) *corev1.ConfigMap {
	t.Helper()
	cm, err := r.client.CoreV1().ConfigMaps(testNS).Get(context.Background(), testBundle, metav1.GetOptions{})
	require.NoError(t, err)
	return cm
}

// apiCalls lists the client's calls as "verb resource", reads and writes alike.
func apiCalls(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
	}
	return out
}

func wroteMsg(leaf *certs.Pair) string {
	return "wrote the certificate (serial " + leaf.Cert.SerialNumber.String() + ", expires " +
		leaf.Cert.NotAfter.Format(time.RFC3339) + ") for the registry's start"
}

func renewedMsg(leaf *certs.Pair) string {
	return "wrote the renewed certificate (serial " + leaf.Cert.SerialNumber.String() + ", expires " +
		leaf.Cert.NotAfter.Format(time.RFC3339) + "); the registry's liveness probe restarts it with the new files"
}

func TestTLSReloaderFirstStart(t *testing.T) {
	t.Parallel()
	ca := issueCA(t, "connected-registry CA")
	leaf := issueLeaf(t, ca)

	t.Run("the first pass should write the pair at once, without waiting for any node, and mark the sidecar started", func(t *testing.T) {
		t.Parallel()
		// Two nodes run the agent and none has acknowledged anything yet: the first start must not wait.
		client := fake.NewClientset(tlsSecretOf(ca, leaf), bundleOf(nil, nil), agentDaemonSet(2))
		r := newReloader(t, client)
		require.False(t, r.Started(), "the startup probe fails before a certificate is written")

		msg, err := r.Sync(context.Background())
		require.NoError(t, err)
		require.Equal(t, wroteMsg(leaf), msg)
		require.True(t, r.Started())
		crt, key := r.written(t)
		require.Equal(t, string(leaf.CertPEM), crt)
		require.Equal(t, string(leaf.KeyPEM), key)
		for name, mode := range map[string]os.FileMode{"tls.crt": 0o644, "tls.key": 0o600} {
			fi, err := os.Stat(filepath.Join(r.TLSDir, name))
			require.NoError(t, err)
			require.Equal(t, mode, fi.Mode().Perm(), name)
		}
		entries, err := os.ReadDir(r.TLSDir)
		require.NoError(t, err)
		require.Len(t, entries, 2, "no temporary file is left")
		require.Equal(t, string(ca.CertPEM), r.bundle(t).Data[bundle.Key], "the CA is published on the same pass")

		msg, err = r.Sync(context.Background())
		require.NoError(t, err)
		require.Empty(t, msg, "a second pass with the same Secret does nothing")
	})

	t.Run("without a TLS directory the pass should only publish the bundle and mark the sidecar started", func(t *testing.T) {
		t.Parallel()
		client := fake.NewClientset(tlsSecretOf(ca, leaf), bundleOf(nil, nil))
		r := newReloader(t, client, func(o *Reloader) { o.TLSDir = "" })
		msg, err := r.Sync(context.Background())
		require.NoError(t, err)
		require.Empty(t, msg)
		require.True(t, r.Started())
		require.Equal(t, string(ca.CertPEM), r.bundle(t).Data[bundle.Key])
	})

	t.Run("a missing Secret should fail naming it and leave the sidecar unstarted", func(t *testing.T) {
		t.Parallel()
		r := newReloader(t, fake.NewClientset(bundleOf(nil, nil)))
		_, err := r.Sync(context.Background())
		require.EqualError(t, err, `reading Secret cr-connected-registry-tls: secrets "cr-connected-registry-tls" not found`)
		require.False(t, r.Started())
	})
}

func TestTLSReloaderPublishBundle(t *testing.T) {
	t.Parallel()
	ca, oldCA := issueCA(t, "connected-registry CA"), issueCA(t, "old CA")
	leaf := issueLeaf(t, ca)
	tests := []struct {
		name      string
		secret    *corev1.Secret
		bundle    *corev1.ConfigMap
		wantErr   string
		wantCalls []string
		// wantAnnotations are the ConfigMap's annotations after the pass; nil when it is not checked.
		wantAnnotations map[string]string
	}{
		{
			name:            "the CA should be copied into the empty ConfigMap with its fingerprint",
			secret:          tlsSecretOf(ca, leaf),
			bundle:          bundleOf(nil, nil),
			wantCalls:       []string{"get secrets", "get configmaps", "update configmaps"},
			wantAnnotations: map[string]string{bundle.FingerprintAnnotation: bundle.Fingerprint(ca.CertPEM)},
		},
		{
			name:      "a ConfigMap already holding the CA should not be updated",
			secret:    tlsSecretOf(ca, leaf),
			bundle:    bundleOf(ca.CertPEM, map[string]string{"worker-1": bundle.Fingerprint(ca.CertPEM)}),
			wantCalls: []string{"get secrets", "get configmaps"},
		},
		{
			name:      "a new CA should replace the old one and keep the nodes' acknowledgements of the old one",
			secret:    tlsSecretOf(ca, leaf),
			bundle:    bundleOf(oldCA.CertPEM, map[string]string{"worker-1": bundle.Fingerprint(oldCA.CertPEM)}),
			wantCalls: []string{"get secrets", "get configmaps", "update configmaps"},
			wantAnnotations: map[string]string{bundle.FingerprintAnnotation: bundle.Fingerprint(ca.CertPEM),
				bundle.AckAnnotationPrefix + "worker-1": bundle.Fingerprint(oldCA.CertPEM)},
		},
		{
			name: "a Secret without ca.crt should fail and leave the ConfigMap alone",
			secret: func() *corev1.Secret {
				s := tlsSecretOf(ca, leaf)
				delete(s.Data, "ca.crt")
				return s
			}(),
			bundle:    bundleOf(nil, nil),
			wantErr:   "secret cr-connected-registry-tls has no ca.crt: the nodes cannot be given a CA",
			wantCalls: []string{"get secrets"},
		},
		{
			name:      "a missing ConfigMap should fail naming it",
			secret:    tlsSecretOf(ca, leaf),
			wantErr:   `reading ConfigMap cr-connected-registry-trust-bundle: configmaps "cr-connected-registry-trust-bundle" not found`,
			wantCalls: []string{"get secrets", "get configmaps"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := []runtime.Object{tc.secret}
			if tc.bundle != nil {
				objs = append(objs, tc.bundle)
			}
			client := fake.NewClientset(objs...)
			r := newReloader(t, client, func(o *Reloader) { o.TLSDir = "" })
			before := tc.bundle.DeepCopy()
			msg, err := r.Sync(context.Background())
			require.Empty(t, msg)
			require.Equal(t, tc.wantCalls, apiCalls(client))
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				require.True(t, r.Started(), "a bundle that cannot be published does not hold the registry back")
				if tc.bundle != nil {
					require.Equal(t, before.Data, r.bundle(t).Data)
				}
				return
			}
			require.NoError(t, err)
			cm := r.bundle(t)
			require.Equal(t, map[string]string{"ca.crt": string(ca.CertPEM)}, cm.Data)
			if tc.wantAnnotations != nil {
				require.Equal(t, tc.wantAnnotations, cm.Annotations)
			}

			client.ClearActions()
			_, err = r.Sync(context.Background())
			require.NoError(t, err)
			require.Equal(t, []string{"get secrets", "get configmaps"}, apiCalls(client), "an unchanged CA is not written again")
		})
	}
}

func TestTLSReloaderRenewalFromTheSameCA(t *testing.T) {
	t.Parallel()
	ca := issueCA(t, "connected-registry CA")
	old, renewed := issueLeaf(t, ca), issueLeaf(t, ca)
	fp := bundle.Fingerprint(ca.CertPEM)
	objs := append([]runtime.Object{tlsSecretOf(ca, old), agentDaemonSet(2), bundleOf(ca.CertPEM, nil)},
		leasesOf(t, map[string]string{"worker-1": fp, "worker-2": fp})...)
	r := newReloader(t, fake.NewClientset(objs...))

	msg, err := r.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, wroteMsg(old), msg)
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Empty(t, msg, "a pass with the same Secret does nothing")

	// cert-manager renews the certificate; every node trusts its CA already.
	r.setSecret(t, tlsSecretOf(ca, renewed))
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, renewedMsg(renewed), msg)
	crt, key := r.written(t)
	require.Equal(t, string(renewed.CertPEM), crt)
	require.Equal(t, string(renewed.KeyPEM), key)
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Empty(t, msg, "written once")
	require.Empty(t, r.events.take())
}

func TestTLSReloaderWaitsForTheNodesToTrustANewCA(t *testing.T) {
	t.Parallel()
	oldCA, newCA := issueCA(t, "old CA"), issueCA(t, "new CA")
	oldLeaf, newLeaf := issueLeaf(t, oldCA), issueLeaf(t, newCA)
	oldFP, newFP := bundle.Fingerprint(oldCA.CertPEM), bundle.Fingerprint(newCA.CertPEM)
	waits := "renewed certificate (serial " + newLeaf.Cert.SerialNumber.String() + ") waits: "
	tests := []struct {
		name      string
		daemonSet string
		objs      []runtime.Object
		acks      map[string]string
		// publishedCA is the ca.crt of the renewed Secret; the new CA unless set.
		publishedCA []byte
		// wantWait is the error of the passes before TrustWait; empty when the pair is written at once.
		wantWait string
	}{
		{
			name:      "a bundle acknowledged by one of two nodes should hold the new certificate back",
			daemonSet: testAgentDS, objs: []runtime.Object{agentDaemonSet(2)},
			acks:     map[string]string{"worker-1": newFP, "worker-2": oldFP},
			wantWait: waits + "1 of 2 nodes trust CA bundle " + newFP,
		},
		{
			name:      "a bundle no node acknowledged yet should hold the new certificate back",
			daemonSet: testAgentDS, objs: []runtime.Object{agentDaemonSet(2)},
			acks:     map[string]string{"worker-1": oldFP, "worker-2": oldFP},
			wantWait: waits + "0 of 2 nodes trust CA bundle " + newFP,
		},
		{
			name:      "a bundle every node acknowledged should let the new certificate through at once",
			daemonSet: testAgentDS, objs: []runtime.Object{agentDaemonSet(2)},
			acks: map[string]string{"worker-1": newFP, "worker-2": newFP},
		},
		{
			name:      "without --daemonset nobody should be waited for",
			daemonSet: "", objs: []runtime.Object{agentDaemonSet(2)},
			acks: map[string]string{"worker-1": oldFP},
		},
		{
			name:      "a DaemonSet that does not exist should not be waited for",
			daemonSet: testAgentDS,
			acks:      map[string]string{"worker-1": oldFP},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := append([]runtime.Object{tlsSecretOf(oldCA, oldLeaf), bundleOf(oldCA.CertPEM, nil)}, tc.objs...)
			objs = append(objs, leasesOf(t, tc.acks)...)
			client := fake.NewClientset(objs...)
			r := newReloader(t, client, func(o *Reloader) { o.DaemonSet = tc.daemonSet })
			msg, err := r.Sync(context.Background())
			require.NoError(t, err)
			require.Equal(t, wroteMsg(oldLeaf), msg)

			renewed := tlsSecretOf(newCA, newLeaf)
			if tc.publishedCA != nil {
				renewed.Data["ca.crt"] = tc.publishedCA
			}
			r.setSecret(t, renewed)
			if tc.wantWait != "" {
				for _, step := range []time.Duration{0, time.Minute, r.TrustWait - time.Minute - time.Second} {
					r.clock.Advance(step)
					msg, err = r.Sync(context.Background())
					require.EqualError(t, err, tc.wantWait)
					require.Empty(t, msg)
					crt, key := r.written(t)
					require.Equal(t, string(oldLeaf.CertPEM), crt, "the registry keeps the certificate the nodes trust")
					require.Equal(t, string(oldLeaf.KeyPEM), key)
				}
				require.Equal(t, string(renewed.Data["ca.crt"]), r.bundle(t).Data[bundle.Key], "the bundle is published while the certificate waits")
				r.clock.Advance(time.Second)
			}
			msg, err = r.Sync(context.Background())
			require.NoError(t, err)
			require.Equal(t, renewedMsg(newLeaf), msg)
			crt, key := r.written(t)
			require.Equal(t, string(newLeaf.CertPEM), crt)
			require.Equal(t, string(newLeaf.KeyPEM), key)
		})
	}
}

// TestTLSReloaderWaitsAfreshForEachNewCertificate: a renewal that waited and was then abandoned (the Secret rolled
// back) lends none of its waiting time to a later certificate from another new CA.
func TestTLSReloaderWaitsAfreshForEachNewCertificate(t *testing.T) {
	t.Parallel()
	oldCA, newCA, otherCA := issueCA(t, "old CA"), issueCA(t, "new CA"), issueCA(t, "other CA")
	oldLeaf, newLeaf, otherLeaf := issueLeaf(t, oldCA), issueLeaf(t, newCA), issueLeaf(t, otherCA)
	oldFP := bundle.Fingerprint(oldCA.CertPEM)
	client := fake.NewClientset(append([]runtime.Object{tlsSecretOf(oldCA, oldLeaf), bundleOf(oldCA.CertPEM, nil), agentDaemonSet(2)},
		leasesOf(t, map[string]string{"worker-1": oldFP, "worker-2": oldFP})...)...)
	r := newReloader(t, client, func(o *Reloader) { o.DaemonSet = testAgentDS })
	_, err := r.Sync(context.Background())
	require.NoError(t, err)

	r.setSecret(t, tlsSecretOf(newCA, newLeaf))
	_, err = r.Sync(context.Background())
	require.ErrorContains(t, err, "0 of 2 nodes trust CA bundle")
	r.setSecret(t, tlsSecretOf(oldCA, oldLeaf))
	_, err = r.Sync(context.Background())
	require.NoError(t, err)

	r.clock.Advance(7 * 24 * time.Hour)
	r.setSecret(t, tlsSecretOf(otherCA, otherLeaf))
	msg, err := r.Sync(context.Background())
	require.ErrorContains(t, err, "renewed certificate (serial "+otherLeaf.Cert.SerialNumber.String()+") waits: 0 of 2 nodes trust CA bundle")
	require.Empty(t, msg)
	crt, _ := r.written(t)
	require.Equal(t, string(oldLeaf.CertPEM), crt, "the other CA's certificate waits its own TrustWait")
}

func TestTLSReloaderRefusesABadSecret(t *testing.T) {
	t.Parallel()
	ca := issueCA(t, "connected-registry CA")
	a, b := issueLeaf(t, ca), issueLeaf(t, ca)
	tests := []struct {
		name    string
		crt     []byte
		key     []byte
		wantErr string
	}{
		{
			name:    "a tls.key of another certificate should be refused",
			crt:     a.CertPEM,
			key:     b.KeyPEM,
			wantErr: "secret cr-connected-registry-tls: tls.crt and tls.key do not make a key pair: tls: private key does not match public key",
		},
		{
			name:    "a tls.crt that is no PEM certificate should be refused",
			crt:     a.KeyPEM,
			key:     a.KeyPEM,
			wantErr: "secret cr-connected-registry-tls: tls.crt holds no PEM certificate",
		},
		{
			name:    "an empty tls.key should be refused",
			crt:     a.CertPEM,
			wantErr: "secret cr-connected-registry-tls: tls.crt and tls.key do not make a key pair: tls: failed to find any PEM data in key input",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tlsSecretOf(ca, a)
			s.Data["tls.crt"], s.Data["tls.key"] = tc.crt, tc.key

			t.Run("before the first start nothing should be written", func(t *testing.T) {
				t.Parallel()
				r := newReloader(t, fake.NewClientset(s.DeepCopy(), bundleOf(nil, nil)))
				msg, err := r.Sync(context.Background())
				require.EqualError(t, err, tc.wantErr)
				require.Empty(t, msg)
				entries, err := os.ReadDir(r.TLSDir)
				require.NoError(t, err)
				require.Empty(t, entries)
				require.False(t, r.Started())
			})

			t.Run("after the first start the written pair should be kept", func(t *testing.T) {
				t.Parallel()
				r := newReloader(t, fake.NewClientset(tlsSecretOf(ca, a), bundleOf(nil, nil)))
				_, err := r.Sync(context.Background())
				require.NoError(t, err)
				r.setSecret(t, s.DeepCopy())
				msg, err := r.Sync(context.Background())
				require.EqualError(t, err, tc.wantErr)
				require.Empty(t, msg)
				crt, key := r.written(t)
				require.Equal(t, string(a.CertPEM), crt)
				require.Equal(t, string(a.KeyPEM), key)
			})
		})
	}
}

// The reloader reads the Leases the agents write, and the annotations of agents before the Leases: a renewed
// certificate passes once every node acknowledged its CA one way or the other.
func TestTLSReloaderReadsTheAgentsAcknowledgements(t *testing.T) {
	t.Parallel()
	oldCA, newCA := issueCA(t, "old CA"), issueCA(t, "new CA")
	oldLeaf, newLeaf := issueLeaf(t, oldCA), issueLeaf(t, newCA)
	newFP := bundle.Fingerprint(newCA.CertPEM)
	long := "worker-" + strings.Repeat("long-", 60) // a hashed Lease name and annotation
	// worker-1 was upgraded (a Lease); worker-2's agent is still the earlier one (an annotation).
	client := fake.NewClientset(tlsSecretOf(oldCA, oldLeaf), bundleOf(nil, map[string]string{"worker-2": newFP}), agentDaemonSet(3))
	r := newReloader(t, client)
	_, err := r.Sync(context.Background())
	require.NoError(t, err)
	r.setSecret(t, tlsSecretOf(newCA, newLeaf))
	_, err = r.Sync(context.Background())
	require.EqualError(t, err, "renewed certificate (serial "+newLeaf.Cert.SerialNumber.String()+") waits: 1 of 3 nodes trust CA bundle "+newFP)

	acks := bundle.Acks{Client: client, Namespace: testNS, Release: testRelease}
	require.NoError(t, acks.Ack(context.Background(), "worker-1", newFP))
	_, err = r.Sync(context.Background())
	require.ErrorContains(t, err, "2 of 3 nodes trust")
	require.NoError(t, acks.Ack(context.Background(), long, newFP))
	require.LessOrEqual(t, len(acks.Name(long)), 253)
	msg, err := r.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, renewedMsg(newLeaf), msg)

	// A node's annotation and its Lease count once, the Lease deciding.
	require.Equal(t, 1, bundle.Count(map[string]string{"worker-2": "other"}, map[string]string{bundle.AckAnnotation("worker-2"): newFP, bundle.AckAnnotation("worker-9"): newFP}, newFP)-0,
		"worker-2's Lease (another bundle) wins over its annotation; worker-9's annotation counts")
}

// TestTLSReloaderRefusesACertificateThatCannotServeTheNodes: a certificate that is expired, not yet valid, lacks
// the ClusterIP or does not chain to the published CA is never written, before the first start or after: the
// registry keeps what it has, and an Event and the error name the reason, once.
func TestTLSReloaderRefusesACertificateThatCannotServeTheNodes(t *testing.T) {
	t.Parallel()
	ca, foreign := issueCA(t, "connected-registry CA"), issueCA(t, "foreign CA")
	good := issueLeaf(t, ca)
	expired := issueLeafAt(t, ca, testEpoch.Add(-2*certs.DefaultLeafDuration), "10.96.0.50")
	future := issueLeafAt(t, ca, testEpoch.Add(time.Hour), "10.96.0.50")
	wrongIP := issueLeafAt(t, ca, testEpoch, "10.96.0.99")
	foreignLeaf := issueLeaf(t, foreign)
	tests := []struct {
		name string
		leaf *certs.Pair
		want string
	}{
		{name: "an expired certificate should not be installed", leaf: expired,
			want: "it expired on " + expired.Cert.NotAfter.UTC().Format(time.RFC3339)},
		{name: "a certificate valid only in an hour should not be installed", leaf: future,
			want: "it is not valid before " + future.Cert.NotBefore.UTC().Format(time.RFC3339)},
		{name: "a certificate without the ClusterIP should not be installed", leaf: wrongIP,
			want: "its subject alternative names (IP:10.96.0.99, DNS:cr-connected-registry) lack the ClusterIP 10.96.0.50 the nodes pull from"},
		{name: "a certificate of another CA than the published one should not be installed", leaf: foreignLeaf,
			want: "it does not chain to the CA in the Secret's ca.crt, which the nodes trust (x509: certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad := tlsSecretOf(ca, tc.leaf)

			t.Run("before the first start", func(t *testing.T) {
				t.Parallel()
				r := newReloader(t, fake.NewClientset(bad, bundleOf(nil, nil)))
				msg, refused := r.Sync(context.Background())
				err := refused
				require.ErrorContains(t, err, "secret cr-connected-registry-tls: the certificate (serial "+tc.leaf.Cert.SerialNumber.String()+") is not installed: "+tc.want)
				require.ErrorContains(t, err, "the registry does not start until the Secret holds a certificate it can serve")
				require.Empty(t, msg)
				require.False(t, r.Started())
				entries, err := os.ReadDir(r.TLSDir)
				require.NoError(t, err)
				require.Empty(t, entries)
				got := r.events.take()
				require.Len(t, got, 1)
				require.Equal(t, "Warning "+ReasonRefused+": "+refused.Error(), got[0])
				_, err = r.Sync(context.Background())
				require.Error(t, err)
				require.Empty(t, r.events.take(), "the same refusal is reported once")
				require.Equal(t, string(ca.CertPEM), r.bundle(t).Data[bundle.Key], "the CA is published all the same")
			})

			t.Run("after the first start", func(t *testing.T) {
				t.Parallel()
				r := newReloader(t, fake.NewClientset(tlsSecretOf(ca, good), bundleOf(nil, nil)), func(o *Reloader) { o.DaemonSet = "" })
				_, err := r.Sync(context.Background())
				require.NoError(t, err)
				r.setSecret(t, bad)
				for range 2 {
					r.clock.Advance(10 * time.Minute) // beyond TrustWait: a refusal never gives in
					msg, err := r.Sync(context.Background())
					require.ErrorContains(t, err, "is not installed: "+tc.want)
					require.ErrorContains(t, err, "the registry keeps serving the certificate it has")
					require.Empty(t, msg)
					crt, key := r.written(t)
					require.Equal(t, string(good.CertPEM), crt, "the registry keeps its certificate")
					require.Equal(t, string(good.KeyPEM), key)
				}
				require.Len(t, r.events.take(), 1)

				// Fixed in the Secret: written, and a later refusal is reported again.
				r.setSecret(t, tlsSecretOf(ca, issueLeafAt(t, ca, r.clock.Now(), "10.96.0.50")))
				msg, err := r.Sync(context.Background())
				require.NoError(t, err)
				require.Contains(t, msg, "wrote the renewed certificate")
			})
		})
	}
}

// TestTLSReloaderStartsWithThePreviousCertificate: with the API server out of reach when the reloader starts,
// a certificate already in the registry's volume (the sidecar restarted, the pod's volume kept) lets the
// registry start; without one, nothing does.
func TestTLSReloaderStartsWithThePreviousCertificate(t *testing.T) {
	t.Parallel()
	ca := issueCA(t, "connected-registry CA")
	leaf := issueLeaf(t, ca)
	down := func() *fake.Clientset {
		client := fake.NewClientset()
		client.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("dial tcp 10.96.0.1:443: connect: connection refused")
		})
		return client
	}

	r := newReloader(t, down())
	_, err := r.Sync(context.Background())
	require.ErrorContains(t, err, "connection refused")
	require.False(t, r.Started(), "nothing on disk: the registry cannot start")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.crt"), leaf.CertPEM, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.key"), leaf.KeyPEM, 0o600))
	r = newReloader(t, down(), func(o *Reloader) { o.TLSDir = dir })
	msg, err := r.Sync(context.Background())
	require.ErrorContains(t, err, "reading Secret cr-connected-registry-tls: dial tcp 10.96.0.1:443: connect: connection refused")
	require.True(t, r.Started(), "the registry starts with the certificate it had")
	require.Equal(t, "the registry starts with the certificate already written (serial "+leaf.Cert.SerialNumber.String()+", expires "+
		leaf.Cert.NotAfter.Format(time.RFC3339)+"), since the API server cannot be read", msg)
	crt, _ := r.written(t)
	require.Equal(t, string(leaf.CertPEM), crt)
}
