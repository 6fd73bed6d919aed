package reloader

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
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
	// Pids of the fake /proc: far above the pids a test process gets, so never the test's own.
	registryPid = 4000101
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
	leaf, err := certs.Issue(rand.Reader, ca, certs.Request{IPs: []netip.Addr{netip.MustParseAddr("10.96.0.50")},
		DNSNames: []string{"cr-connected-registry"}, Key: certs.DefaultKeySpec, Duration: certs.DefaultLeafDuration}, testEpoch)
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

// fakeProc is a /proc with the registry, the reloader itself, a process whose name only starts like the
// registry's, a kernel thread (empty cmdline), a non-numeric entry and an entry for the test's own pid named
// like the registry: only registryPid may be stopped.
func fakeProc(t *testing.T, withRegistry bool) string {
	t.Helper()
	dir := t.TempDir()
	procs := map[string]string{
		"4000102":                 "/connected-registry\x00tls-reloader\x00--secret=" + testTLSSecret + "\x00",
		"4000103":                 "/usr/bin/registry-ui\x00serve\x00",
		"4000104":                 "",
		"self":                    "/usr/bin/registry\x00",
		strconv.Itoa(os.Getpid()): "/usr/bin/registry\x00serve\x00",
	}
	if withRegistry {
		procs[strconv.Itoa(registryPid)] = "/usr/bin/registry\x00serve\x00/etc/distribution/config.yml\x00"
	}
	require.NotContains(t, []int{registryPid, 4000102, 4000103, 4000104}, os.Getpid())
	for name, cmdline := range procs {
		require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name, "cmdline"), []byte(cmdline), 0o444))
	}
	return dir
}

type testReloader struct {
	*Reloader
	client  *fake.Clientset
	clock   *stepClock
	signals []int
}

// newReloader builds the sidecar as the chart runs it, on client, writing into a fresh TLSDir.
func newReloader(t *testing.T, client *fake.Clientset, mutate ...func(*Reloader)) *testReloader {
	t.Helper()
	r := &testReloader{client: client, clock: &stepClock{t: testEpoch}}
	r.Reloader = &Reloader{
		Client: client, Namespace: testNS, RequestTimeout: time.Minute, Clock: r.clock,
		Secret: testTLSSecret, Bundle: testBundle, DaemonSet: testAgentDS, TLSDir: t.TempDir(),
		Addr: closedAddr(t), Process: "registry", Interval: 2 * time.Second, TrustWait: 5 * time.Minute,
		Proc:   fakeProc(t, true),
		Signal: func(pid int) error { r.signals = append(r.signals, pid); return nil },
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
		leaf.Cert.NotAfter.Format(time.RFC3339) + ")"
}

func stoppedMsg(served, leaf *certs.Pair) string {
	return "stopped registry (pid [" + strconv.Itoa(registryPid) + "]), which served serial " + served.Cert.SerialNumber.String() +
		", so it starts again with serial " + leaf.Cert.SerialNumber.String()
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
		require.Empty(t, r.signals, "nothing is served yet, nothing is stopped")

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
		require.Empty(t, r.signals)
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
	client := fake.NewClientset(tlsSecretOf(ca, old), agentDaemonSet(2),
		bundleOf(ca.CertPEM, map[string]string{"worker-1": fp, "worker-2": fp}))
	registry := serveTLS(t, old)
	r := newReloader(t, client, func(o *Reloader) { o.Addr = registry.addr })

	msg, err := r.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, wroteMsg(old), msg)

	// The registry serves the pair written; a pass finds nothing to do.
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Empty(t, msg)
	require.Empty(t, r.signals, "the served certificate is the written one")

	// cert-manager renews the certificate; every node trusts its CA already.
	r.setSecret(t, tlsSecretOf(ca, renewed))
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, renewedMsg(renewed)+"; "+stoppedMsg(old, renewed), msg)
	crt, key := r.written(t)
	require.Equal(t, string(renewed.CertPEM), crt)
	require.Equal(t, string(renewed.KeyPEM), key)
	require.Equal(t, []int{registryPid}, r.signals, "only the registry is stopped: not the reloader, not registry-ui, not this process")

	// The registry restarts and still serves the old certificate for a moment: it is not stopped again at once.
	r.clock.Advance(29 * time.Second)
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Empty(t, msg)
	require.Equal(t, []int{registryPid}, r.signals)

	// Still the old certificate 30 seconds after the signal: the registry is stopped again.
	r.clock.Advance(time.Second)
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, stoppedMsg(old, renewed), msg)
	require.Equal(t, []int{registryPid, registryPid}, r.signals)

	// It serves the renewed certificate: nothing more to do.
	registry.serve(t, renewed)
	r.clock.Advance(time.Minute)
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Empty(t, msg)
	require.Len(t, r.signals, 2)

	// Two renewals ten seconds apart: the files of the second need a start of their own, restarting or not.
	second, third := issueLeaf(t, ca), issueLeaf(t, ca)
	r.setSecret(t, tlsSecretOf(ca, second))
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, renewedMsg(second)+"; "+stoppedMsg(renewed, second), msg)
	r.clock.Advance(10 * time.Second)
	r.setSecret(t, tlsSecretOf(ca, third))
	msg, err = r.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, renewedMsg(third)+"; "+stoppedMsg(renewed, third), msg)
	require.Equal(t, []int{registryPid, registryPid, registryPid, registryPid}, r.signals)
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
			name:      "a published bundle that does not verify the new certificate should hold it back",
			daemonSet: testAgentDS, objs: []runtime.Object{agentDaemonSet(2)},
			acks:        map[string]string{"worker-1": oldFP, "worker-2": oldFP},
			publishedCA: oldCA.CertPEM,
			wantWait:    waits + "the published bundle does not verify it yet: x509: certificate signed by unknown authority",
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
			objs := append([]runtime.Object{tlsSecretOf(oldCA, oldLeaf), bundleOf(oldCA.CertPEM, tc.acks)}, tc.objs...)
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
			require.Equal(t, renewedMsg(newLeaf), msg, "nothing serves at Addr: the registry starts with the files")
			crt, key := r.written(t)
			require.Equal(t, string(newLeaf.CertPEM), crt)
			require.Equal(t, string(newLeaf.KeyPEM), key)
			require.Empty(t, r.signals)
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
	client := fake.NewClientset(tlsSecretOf(oldCA, oldLeaf), bundleOf(oldCA.CertPEM, map[string]string{"worker-1": oldFP, "worker-2": oldFP}), agentDaemonSet(2))
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
				require.Empty(t, r.signals)
			})
		})
	}
}

func TestTLSReloaderComparesWithWhatIsServed(t *testing.T) {
	t.Parallel()
	ca := issueCA(t, "connected-registry CA")
	written, other := issueLeaf(t, ca), issueLeaf(t, ca)
	tests := []struct {
		name        string
		served      *certs.Pair
		noRegistry  bool
		wantMsg     string
		wantErr     string
		wantSignals []int
	}{
		{
			name:   "a registry serving the written certificate should not be stopped",
			served: written,
		},
		{
			name:        "a registry serving another certificate should be stopped",
			served:      other,
			wantMsg:     stoppedMsg(other, written),
			wantSignals: []int{registryPid},
		},
		{
			name:       "a registry serving another certificate outside the shared process namespace should be reported",
			served:     other,
			noRegistry: true,
			wantErr:    `no "registry" process in the pod: the pod needs shareProcessNamespace: true`,
		},
		{
			name: "a registry not serving yet should be left to start",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newReloader(t, fake.NewClientset(tlsSecretOf(ca, written), bundleOf(nil, nil), agentDaemonSet(2)), func(o *Reloader) {
				if tc.served != nil {
					o.Addr = serveTLS(t, tc.served).addr
				}
				o.Proc = fakeProc(t, !tc.noRegistry)
			})
			_, err := r.Sync(context.Background())
			require.NoError(t, err, "the first pass writes")
			msg, err := r.Sync(context.Background())
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.wantMsg, msg)
			require.Equal(t, tc.wantSignals, r.signals)
		})
	}
}

// The reloader reads acknowledgements the agents wrote; a renewed certificate passes once the agent's patch is there.
func TestTLSReloaderReadsTheAgentsAcknowledgements(t *testing.T) {
	t.Parallel()
	oldCA, newCA := issueCA(t, "old CA"), issueCA(t, "new CA")
	oldLeaf, newLeaf := issueLeaf(t, oldCA), issueLeaf(t, newCA)
	node := "worker-" + strings.Repeat("long-", 15) // hashed annotation
	client := fake.NewClientset(tlsSecretOf(oldCA, oldLeaf), bundleOf(nil, nil), agentDaemonSet(1))
	r := newReloader(t, client)
	_, err := r.Sync(context.Background())
	require.NoError(t, err)
	r.setSecret(t, tlsSecretOf(newCA, newLeaf))
	_, err = r.Sync(context.Background())
	require.EqualError(t, err, "renewed certificate (serial "+newLeaf.Cert.SerialNumber.String()+") waits: 0 of 1 nodes trust CA bundle "+bundle.Fingerprint(newCA.CertPEM))

	cm := bundle.ConfigMap{Client: client, Namespace: testNS, Name: testBundle}
	require.NoError(t, cm.Ack(context.Background(), node, bundle.Fingerprint(newCA.CertPEM)))
	require.Contains(t, r.bundle(t).Annotations, bundle.AckAnnotation(node))
	msg, err := r.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, renewedMsg(newLeaf), msg)
	var patches []string
	for _, a := range client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			patches = append(patches, string(p.GetPatch()))
		}
	}
	require.Equal(t, []string{`{"metadata":{"annotations":{"` + bundle.AckAnnotation(node) + `":"` + bundle.Fingerprint(newCA.CertPEM) + `"}}}`}, patches)
}
