package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
)

func testOptions(t *testing.T, bridgeCIDR string) *Options {
	t.Helper()
	o := &Options{StateDir: t.TempDir(), BridgeCIDR: bridgeCIDR, Out: io.Discard}
	require.NoError(t, o.Complete())
	return o
}

func TestEnsurePKI(t *testing.T) {
	t.Parallel()
	now := time.Now()

	t.Run("a second run keeps every file that is still right", func(t *testing.T) {
		t.Parallel()
		o := testOptions(t, DefaultBridgeCIDR)
		require.NoError(t, o.ensurePKI(now))
		before := readAll(t, o.path("pki"))
		require.NoError(t, o.ensurePKI(now))
		require.Equal(t, before, readAll(t, o.path("pki")))
	})

	t.Run("a new bridge address reissues the serving certificates but keeps the CA", func(t *testing.T) {
		t.Parallel()
		o := testOptions(t, DefaultBridgeCIDR)
		require.NoError(t, o.ensurePKI(now))
		before := readAll(t, o.path("pki"))
		o2 := testOptions(t, "10.245.0.1/24")
		o2.StateDir = o.StateDir
		require.NoError(t, o2.ensurePKI(now))
		after := readAll(t, o.path("pki"))
		require.Equal(t, before["ca.crt"], after["ca.crt"])
		require.NotEqual(t, before["apiserver.crt"], after["apiserver.crt"])
		require.NotEqual(t, before["kubelet.crt"], after["kubelet.crt"])
		require.Equal(t, before["admin.crt"], after["admin.crt"])
	})

	t.Run("a certificate close to expiry is reissued", func(t *testing.T) {
		t.Parallel()
		o := testOptions(t, DefaultBridgeCIDR)
		require.NoError(t, o.ensurePKI(now))
		before := readAll(t, o.path("pki"))
		require.NoError(t, o.ensurePKI(now.Add(leafValidity-renewBefore/2)))
		after := readAll(t, o.path("pki"))
		require.Equal(t, before["ca.crt"], after["ca.crt"])
		require.NotEqual(t, before["admin.crt"], after["admin.crt"])
	})

	t.Run("the API server certificate serves TLS to the admin kubeconfig at every advertised address", func(t *testing.T) {
		t.Parallel()
		o := testOptions(t, DefaultBridgeCIDR)
		require.NoError(t, o.ensurePKI(now))
		srvCert, err := tls.LoadX509KeyPair(o.path("pki", "apiserver.crt"), o.path("pki", "apiserver.key"))
		require.NoError(t, err)
		caPEM, err := os.ReadFile(o.CACert())
		require.NoError(t, err)
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(caPEM))
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.TLS.PeerCertificates) == 1 {
				_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
			}
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
		srv.StartTLS()
		defer srv.Close()

		cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig())
		require.NoError(t, err)
		tlsCfg, err := clientTLS(cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData)
		require.NoError(t, err)
		for _, name := range []string{"127.0.0.1", o.bridgeIP.String(), o.firstSvcIP.String(), "kubernetes.default.svc"} {
			c := tlsCfg.Clone()
			c.ServerName = name
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: c}}
			resp, err := client.Get(srv.URL)
			require.NoError(t, err, "server name %s", name)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, "kubernetes-admin", string(body))
		}
	})
}

func clientTLS(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func readAll(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	out := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		out[filepath.Base(f)] = string(data)
	}
	return out
}

func TestCNIConfigHasNoDefaultRoute(t *testing.T) {
	t.Parallel()
	o := testOptions(t, DefaultBridgeCIDR)
	data, err := o.cniConfig()
	require.NoError(t, err)
	require.Contains(t, string(data), `"dst": "10.96.0.0/16"`)
	require.NotContains(t, string(data), "0.0.0.0/0")
	require.Contains(t, string(data), `"ipMasq": false`)
}
