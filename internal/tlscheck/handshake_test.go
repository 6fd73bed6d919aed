package tlscheck_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

// handshake serves crtPEM/keyPEM with httptest and fetches https://10.96.0.50/ through it with a client that
// trusts only caPEM and verifies the IP SAN against the ClusterIP, at the time at.
func handshake(t *testing.T, crtPEM, keyPEM, caPEM []byte, at time.Time) error {
	t.Helper()
	pair, err := tls.X509KeyPair(crtPEM, keyPEM)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "registry")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, Time: func() time.Time { return at }}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	addr := srv.Listener.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Time: func() time.Time { return at }},
		// The client asks for the ClusterIP, as nodes do, and reaches the test server.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	resp, err := client.Get("https://" + clusterIP + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "registry", string(body))
	return nil
}

// TestHandshake proves the verdicts with a real TLS handshake: what the checks accept, a client that trusts only
// the CA accepts for https://<clusterIP>; what they reject for how it fits together, the client rejects too.
func TestHandshake(t *testing.T) {
	t.Parallel()
	m := newMaterial(t)
	selfSigned := issue(t, leafTemplate(), rsaKey(t, 4096), nil, func(c *x509.Certificate) {
		c.Subject.CommonName, c.IsCA, c.KeyUsage, c.ExtKeyUsage, c.DNSNames = clusterIP, true, 0, nil, nil
	})
	otherRoot := issue(t, caTemplate("Other Root CA"), nil, nil)
	tests := []struct {
		name            string
		crt, key, ca    []byte
		wantCheckFailed bool
	}{
		{name: "a serving certificate issued by the CA", crt: certPEM(m.leaf), key: keyPEM(t, m.leaf.key), ca: certPEM(m.root)},
		{name: "a chain through an intermediate", crt: certPEM(m.interLeaf, m.inter), key: keyPEM(t, m.interLeaf.key), ca: certPEM(m.root)},
		{name: "an RSA 4096 self-signed certificate given as its own CA, as openssl req -x509 makes it", crt: certPEM(selfSigned), key: keyPEM(t, selfSigned.key), ca: certPEM(selfSigned)},
		{
			name: "a certificate without the ClusterIP",
			crt:  certPEM(issue(t, leafTemplate(), m.leaf.key, m.root, func(c *x509.Certificate) { c.IPAddresses = nil })),
			key:  keyPEM(t, m.leaf.key), ca: certPEM(m.root), wantCheckFailed: true,
		},
		{
			name: "the ClusterIP as a DNS SAN",
			crt: certPEM(issue(t, leafTemplate(), m.leaf.key, m.root, func(c *x509.Certificate) {
				c.IPAddresses, c.DNSNames = nil, []string{clusterIP}
			})),
			key: keyPEM(t, m.leaf.key), ca: certPEM(m.root), wantCheckFailed: true,
		},
		{name: "a chain to another CA", crt: certPEM(m.leaf), key: keyPEM(t, m.leaf.key), ca: certPEM(otherRoot), wantCheckFailed: true},
		{name: "a chain missing its intermediate", crt: certPEM(m.interLeaf), key: keyPEM(t, m.interLeaf.key), ca: certPEM(m.root), wantCheckFailed: true},
		{
			name: "a certificate for clientAuth only",
			crt: certPEM(issue(t, leafTemplate(), m.leaf.key, m.root, func(c *x509.Certificate) {
				c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
			})),
			key: keyPEM(t, m.leaf.key), ca: certPEM(m.root), wantCheckFailed: true,
		},
		{
			name: "an expired certificate",
			crt: certPEM(issue(t, leafTemplate(), m.leaf.key, m.root, func(c *x509.Certificate) {
				c.NotBefore, c.NotAfter = now.AddDate(0, -3, 0), now.AddDate(0, 0, -1)
			})),
			key: keyPEM(t, m.leaf.key), ca: certPEM(m.root), wantCheckFailed: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tlscheck.CheckValues(b64(tc.crt), b64(tc.key), b64(tc.ca), options())
			err := handshake(t, tc.crt, tc.key, tc.ca, now)
			if tc.wantCheckFailed {
				require.Equal(t, tlscheck.Fail, r.Status(), "report: %v", r.Results)
				require.Error(t, err, "the client accepted what the checks reject: %s", r.Summary())
				t.Logf("check: %s\nclient: %v", r.Summary(), err)
				return
			}
			require.NotEqual(t, tlscheck.Fail, r.Status(), "report: %v", r.Results)
			require.NoError(t, err)
		})
	}
}

// TestOpenSSLTutorialCertificate runs the tutorial's exact command and checks that its certificate, given as its
// own CA or with tls.cacrt left empty, is accepted and serves a client that trusts only it.
func TestOpenSSLTutorialCertificate(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	crtFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	out, err := exec.Command(openssl, "req", "-x509", "-newkey", "rsa:4096", "-sha256", "-days", "365", "-nodes",
		"-keyout", keyFile, "-out", crtFile, "-subj", "/CN="+clusterIP,
		"-addext", "subjectAltName = IP:"+clusterIP).CombinedOutput()
	require.NoError(t, err, "%s", out)
	crt, err := os.ReadFile(crtFile)
	require.NoError(t, err)
	key, err := os.ReadFile(keyFile)
	require.NoError(t, err)

	opts := options()
	opts.Clock = nil // openssl used the real clock
	for _, ca := range [][]byte{crt, nil} {
		r := tlscheck.CheckValues(b64(crt), b64(key), b64(ca), opts)
		require.Equal(t, tlscheck.Warn, r.Status(), "report: %v", r.Results)
		require.Len(t, r.Problems(), 1)
		require.ErrorIs(t, r.Problems()[0].Err, tlscheck.ErrDNSNameMissing)
	}
	require.NoError(t, handshake(t, crt, key, crt, time.Now()))

	t.Run("the same key encrypted with a passphrase should fail", func(t *testing.T) {
		enc := filepath.Join(dir, "encrypted.key")
		out, err := exec.Command(openssl, "pkey", "-in", keyFile, "-aes256", "-passout", "pass:secret", "-out", enc).CombinedOutput()
		require.NoError(t, err, "%s", out)
		encrypted, err := os.ReadFile(enc)
		require.NoError(t, err)
		r := tlscheck.CheckValues(b64(crt), b64(encrypted), b64(crt), opts)
		require.ErrorIs(t, r.Err(), tlscheck.ErrEncryptedKey)
	})
	t.Run("an EC key from openssl ecparam -genkey should be accepted", func(t *testing.T) {
		ecKeyFile, ecCrt := filepath.Join(dir, "ec.key"), filepath.Join(dir, "ec.crt")
		out, err := exec.Command(openssl, "ecparam", "-name", "prime256v1", "-genkey", "-out", ecKeyFile).CombinedOutput()
		require.NoError(t, err, "%s", out)
		out, err = exec.Command(openssl, "req", "-x509", "-key", ecKeyFile, "-sha256", "-days", "30",
			"-out", ecCrt, "-subj", "/CN=registry",
			"-addext", "subjectAltName = IP:"+clusterIP+",DNS:"+svc+"."+ns+".svc").CombinedOutput()
		require.NoError(t, err, "%s", out)
		crt, err := os.ReadFile(ecCrt)
		require.NoError(t, err)
		key, err := os.ReadFile(ecKeyFile)
		require.NoError(t, err)
		r := tlscheck.CheckValues(b64(crt), b64(key), b64(crt), opts)
		require.Equal(t, tlscheck.OK, r.Status(), "report: %v", r.Results)
	})
}

// TestChartBYOCScenario checks the material of the chart's byoc scenario, which the Azure extension's protected
// settings give as flat keys.
func TestChartBYOCScenario(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "chart", "connected-registry", "ci", "byoc-values.yaml"))
	require.NoError(t, err)
	value := func(key string) string {
		m := regexp.MustCompile(`"` + regexp.QuoteMeta(key) + `":\s*"([^"]*)"`).FindSubmatch(raw)
		require.NotNil(t, m, "no %s in byoc-values.yaml", key)
		return string(m[1])
	}
	crt, key, ca := value("tls.crt"), value("tls.key"), value("tls.cacrt")
	// Judge the material a day after its own start, not on the day the file was made.
	der, err := base64.StdEncoding.DecodeString(crt)
	require.NoError(t, err)
	block, _ := pem.Decode(der)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	opts := options()
	opts.Clock = fakeClock{c.NotBefore.Add(24 * time.Hour)}
	r := tlscheck.CheckValues(crt, key, ca, opts)
	require.NotEqual(t, tlscheck.Fail, r.Status(), "report: %v", r.Results)
}
