package preflight_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/preflight"
)

// marker stands in for a secret: no verdict of any check may contain it, whatever the mistake around it.
const marker = "PROTECTEDxMARKERx7q"

func TestNoVerdictEchoesAProtectedValue(t *testing.T) {
	t.Parallel()
	b64 := base64.StdEncoding.EncodeToString
	cs := func(pw string) string { return strings.Replace(goodCS, "s3cret-password", pw, 1) }
	keyPEM := "-----BEGIN EC PRIVATE KEY-----\n" + marker + "AAAA\n-----END EC PRIVATE KEY-----\n"
	passwords := map[string]string{
		"as given":                           marker,
		"with a semicolon and a field name":  "x;" + marker + "=y",
		"with a semicolon only":              marker + ";x",
		"with an equals sign":                marker + "=x",
		"with a space":                       marker + " x",
		"with a typographic quote":           marker + "”",
		"with a zero-width space":            marker + "\u200b",
		"with a control character":           marker + "\x01",
		"empty after a semicolon":            ";" + marker,
		"that looks like a field of its own": "ParentEndpointProtocol=" + marker,
	}
	keys := map[string]string{
		"PEM with the marker":          keyPEM,
		"PEM twice":                    keyPEM + keyPEM,
		"an encrypted PEM":             strings.ReplaceAll(keyPEM, "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
		"the wrong block type":         strings.ReplaceAll(keyPEM, "EC PRIVATE KEY", "CERTIFICATE"),
		"no PEM at all":                marker,
		"base64 of PEM":                b64([]byte(keyPEM)),
		"typographic quotes":           "“" + keyPEM + "”",
		"a private key in tls.crt too": keyPEM,
	}
	type tc struct {
		name string
		data map[string]string
	}
	var cases []tc
	for name, pw := range passwords {
		cases = append(cases, tc{"connection string password " + name, map[string]string{"connectionString": cs(pw)}})
	}
	crt := certPEMForProtectedTest(t)
	for name, k := range keys {
		for form, v := range map[string]string{"base64": b64([]byte(k)), "raw": k} {
			data := map[string]string{"connectionString": goodCS, "tls.crt": crt, "tls.key": v}
			if name == "a private key in tls.crt too" {
				data["tls.crt"] = v
			}
			cases = append(cases, tc{"tls.key " + name + " " + form, data})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			cfg.TLSSource = preflight.SourceBYOC
			cfg.CertManagerEnabled, cfg.CertManagerInstall = false, false
			checker := &preflight.Checker{Client: cluster{objects: with(inputSecret(c.data))}.client(t), Config: cfg, Clock: fakeClock{now}}
			for _, r := range checker.Run(context.Background()) {
				require.NotContains(t, r.String(), marker[:8], "a verdict echoes a protected value")
			}
		})
	}
}

// certPEMForProtectedTest is a valid serving certificate, as base64 of its PEM, for the cases whose key is wrong.
func certPEMForProtectedTest(t *testing.T) string {
	t.Helper()
	ca, err := certs.NewCA(rand.Reader, certs.Request{CommonName: "site CA", Key: certs.DefaultKeySpec, Duration: certs.DefaultCADuration}, now.Add(-time.Hour))
	require.NoError(t, err)
	leaf, err := certs.Issue(rand.Reader, ca, certs.Request{IPs: []netip.Addr{netip.MustParseAddr(clusterIP)}, DNSNames: dnsNames,
		Key: certs.DefaultKeySpec, Duration: certs.DefaultLeafDuration}, now.Add(-time.Hour))
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(leaf.CertPEM)
}
