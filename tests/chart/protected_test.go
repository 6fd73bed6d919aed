package chart_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// marker stands in for a secret in every protected value below: no render-time error may contain it.
const marker = "PROTECTEDxMARKERx7q"

// protectedVariants are the mistakes a user makes with a protected value v, each as the text given.
func protectedVariants(v string) map[string]string {
	b64 := base64.StdEncoding.EncodeToString
	out := map[string]string{
		"as given":                v,
		"with a trailing space":   v + " ",
		"across two lines":        v[:len(v)/2] + "\n" + v[len(v)/2:],
		"with a tab inside":       v[:len(v)/2] + "\t" + v[len(v)/2:],
		"with an ASCII quote":     `"` + v + `"`,
		"base64 twice":            b64([]byte(b64([]byte(v)))),
		"with a zero-width space": v + "\u200b",
	}
	for _, q := range []string{"“", "”", "‘", "’", "„", "‚", "‟", "‛", "«", "»", "‹", "›", "＂", "＇", "″"} {
		out["in typographic quotes "+q] = q + v + q
	}
	return out
}

func TestNoRenderErrorEchoesAProtectedValue(t *testing.T) {
	t.Parallel()
	b64 := base64.StdEncoding.EncodeToString
	crt := scenarioValue(t, "byoc", "tls.crt")
	keyPEM := "-----BEGIN EC PRIVATE KEY-----\n" + marker + "AAAA\n-----END EC PRIVATE KEY-----\n"
	connString := func(pw string) string {
		return "ConnectedRegistryName=edge1;SyncTokenName=edge1-sync-token;SyncTokenPassword=" + pw +
			";ParentGatewayEndpoint=contoso.westus2.data.azurecr.io;ParentEndpointProtocol=https"
	}
	byoc := func(key any) map[string]any {
		return with(map[string]any{"cert-manager": map[string]any{"enabled": false, "install": false}, "tls.crt": crt, "tls.key": key})
	}
	byocNested := func(key any) map[string]any {
		return with(map[string]any{"cert-manager": map[string]any{"enabled": false, "install": false}, "tls": map[string]any{"crt": crt, "key": key}})
	}
	proxy := func(k string, url any) map[string]any {
		return with(map[string]any{"Azure": map[string]any{"proxySettings": map[string]any{"isProxyEnabled": true, k: url}}})
	}
	cases := map[string]map[string]any{
		"tls.key as PEM text":                       byoc(keyPEM),
		"tls.key of base64 PEM, nested":             byocNested(b64([]byte(keyPEM))),
		"tls.key as a number-like string":           byoc("12" + marker),
		"tls.key without tls.crt":                   with(map[string]any{"cert-manager.enabled": false, "tls.key": b64([]byte(keyPEM))}),
		"tls.key with cert-manager.enabled":         with(map[string]any{"tls.crt": crt, "tls.key": b64([]byte(keyPEM))}),
		"tls.key with tls.secret":                   with(map[string]any{"cert-manager.enabled": false, "tls.secret": "s", "tls.crt": crt, "tls.key": b64([]byte(keyPEM))}),
		"tls.key of the wrong type":                 byoc(map[string]any{"k": marker}),
		"connectionString without a protocol":       with(map[string]any{"connectionString": strings.TrimSuffix(connString(marker), ";ParentEndpointProtocol=https")}),
		"connectionString with a bad protocol":      with(map[string]any{"connectionString": strings.Replace(connString(marker), "=https", "=ftp", 1)}),
		"connectionString with an endpoint URL":     with(map[string]any{"connectionString": strings.Replace(connString(marker), "=contoso", "=https://contoso", 1)}),
		"connectionString with a password with ;":   with(map[string]any{"connectionString": connString(marker + ";Name=x")}),
		"connectionString with a password with =":   with(map[string]any{"connectionString": connString(marker + "=x")}),
		"connectionString with an empty field":      with(map[string]any{"connectionString": connString(marker) + ";SyncTokenName="}),
		"connectionString of the wrong type":        with(map[string]any{"connectionString": map[string]any{"SyncTokenPassword": marker}}),
		"connectionString with the acr engine only": with(map[string]any{"connectionString": connString(marker), "registry": map[string]any{"engine": "acr", "mode": "ReadOnly"}}),
	}
	for name, v := range protectedVariants(b64([]byte(keyPEM))) {
		cases["tls.key "+name] = byoc(v)
		cases["tls.key nested "+name] = byocNested(v)
	}
	for name, v := range protectedVariants(connString(marker)) {
		cases["connectionString "+name] = with(map[string]any{"connectionString": v})
	}
	for _, k := range []string{"httpProxy", "httpsProxy"} {
		url := "http://proxyuser:" + marker + "@10.0.0.1:3128"
		for name, v := range protectedVariants(url) {
			cases["Azure.proxySettings."+k+" "+name] = proxy(k, v)
		}
		cases["Azure.proxySettings."+k+" with another scheme"] = proxy(k, "ftp://proxyuser:"+marker+"@10.0.0.1:3128")
		cases["Azure.proxySettings."+k+" without a scheme"] = proxy(k, "proxyuser:"+marker+"@10.0.0.1:3128")
		cases["Azure.proxySettings."+k+" of the wrong type"] = proxy(k, []any{"http://proxyuser:" + marker + "@10.0.0.1:3128"})
	}
	for name, vals := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, vals)
			if err == nil {
				return // accepted at render: the preflight messages are checked in internal/preflight
			}
			require.NotContains(t, err.Error(), marker, "the error echoes a protected value")
			for _, part := range []string{marker[:8], b64([]byte(keyPEM))[:24]} {
				require.NotContains(t, err.Error(), part, "the error echoes part of a protected value")
			}
		})
	}
}
