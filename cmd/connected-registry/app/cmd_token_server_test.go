package app_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/clientauth"
)

func TestTokenServerCommandLine(t *testing.T) {
	t.Parallel()
	base := []string{"connected-registry", "token-server", "--secret=t", "--service=10.0.0.1:443", "--key-dir=/k", "--jwks-file=/j"}
	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no Secret should be a usage error naming the required flags", []string{"connected-registry", "token-server"},
			"--secret, --service, --key-dir and --jwks-file are required"},
		{"a lifetime within Distribution's leeway should be a usage error", append(base, "--token-lifetime=1m"),
			"--token-lifetime 1m0s is shorter than 1m30s: the registry accepts a token up to 1m0s after its exp claim, which must not lie before its issue"},
		{"a zero burst should be a usage error", append(base, "--fail-burst=0"), "--fail-every and --fail-burst must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := execute(t, nil, "", tt.args...)
			require.Equal(t, 2, app.ExitCode(r.err))
			require.EqualError(t, r.err, tt.wantErr)
		})
	}
}

// TestTokenServerRun runs the command as the chart does, with a fake API: it publishes the JWKS, serves tokens
// over TLS with the registry's certificate, keeps its keys across a restart, and rotates only once the registry
// trusts the next key.
func TestTokenServerRun(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca, err := certs.NewCA(rand.Reader, certs.Request{CommonName: "test CA", Key: certs.KeySpec{Algorithm: "ECDSA", Size: 256}, Duration: time.Hour}, now)
	require.NoError(t, err)
	leaf, err := certs.Issue(rand.Reader, ca, certs.Request{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Key: certs.KeySpec{Algorithm: "ECDSA", Size: 256}, Duration: time.Hour}, now)
	require.NoError(t, err)
	tlsDir, keyDir, jwksDir := t.TempDir(), t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(tlsDir, "tls.crt"), leaf.CertPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(tlsDir, "tls.key"), leaf.KeyPEM, 0o600))
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "cr", Name: "cr-client-tokens"},
		Data: map[string][]byte{"site": []byte("password: " + string(h) + "\nscope:\n- repositories: [\"*\"]\n  actions: [read]\n")}})

	var registryTrustsNext atomic.Bool
	registry := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !registryTrustsNext.Load() {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(registry.Close)

	run := func() (stop func(), addr string, o *app.TokenServerOptions) {
		port := freePort(t)
		o = &app.TokenServerOptions{
			KubeOptions: app.KubeOptions{Common: &app.Common{Log: slog.New(slog.DiscardHandler)}, Namespace: "cr", Client: cs},
			Secret:      "cr-client-tokens", Listen: "127.0.0.1:" + strconv.Itoa(port), TLSDir: tlsDir,
			Service: "10.0.0.1:443", Issuer: "connected-registry-token-server", Lifetime: 5 * time.Minute,
			KeyDir: keyDir, JWKSFile: filepath.Join(jwksDir, "jwks.json"), FailEvery: time.Second, FailBurst: 5,
			RotateEvery: 200 * time.Millisecond, RegistryURL: registry.URL + "/v2/",
		}
		require.NoError(t, o.Complete())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- o.Run(ctx, io.Discard) }()
		return func() { cancel(); require.NoError(t, <-done) }, o.Listen, o
	}
	stop, addr, o := run()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var token string
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+clientauth.TokenPath+"?"+url.Values{"service": {"10.0.0.1:443"}, "scope": {"repository:a:pull"}}.Encode(), nil)
		req.SetBasicAuth("site", "pw")
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct{ Token string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		token = body.Token
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "a token over TLS with the registry's certificate")
	require.NotEmpty(t, token)

	kids := func() []string {
		b, err := os.ReadFile(o.JWKSFile)
		require.NoError(t, err)
		var set struct{ Keys []struct{ Kid string } }
		require.NoError(t, json.Unmarshal(b, &set))
		var out []string
		for _, k := range set.Keys {
			out = append(out, k.Kid)
		}
		return out
	}
	first := kids()
	require.Len(t, first, 2, "current and next")
	time.Sleep(time.Second)
	assert.Equal(t, first, kids(), "no rotation while the registry does not trust the next key")

	stop()
	stop, _, _ = run()
	assert.Equal(t, first, kids(), "a restarted token server keeps the keys the registry trusts")

	registryTrustsNext.Store(true)
	require.Eventually(t, func() bool { k := kids(); return len(k) == 3 && k[0] == first[1] && k[2] == first[0] },
		10*time.Second, 50*time.Millisecond, "rotated: the next key is current and the old one stays published")
	stop()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
