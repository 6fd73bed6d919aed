package clientauth

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

// Front is the registry's port (the Service's 443) when client tokens are on: it answers TokenPath itself with
// the issuer, and passes every other request, unchanged, to the registry in the pod (Registry, such as
// https://127.0.0.1:5443). The realm is then https://<clusterIP>:443/token, on the registry's own host and port:
// go-containerregistry clients (crane, ko) refuse a realm on another port of a private address, and containerd
// fetches tokens with the TLS settings of the registry host's hosts.toml, which a realm on the same host:port
// shares.
//
// Front checks nothing: the registry itself refuses a request without a valid bearer token, so a client that
// reaches the registry's own port in the pod directly gains nothing. The Host header is kept, so the URLs the
// registry writes (Location of a redirect, the next page of a tags list) name the host the client asked.
func Front(issuer http.Handler, registry *url.URL, transport http.RoundTripper) http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(registry)
			r.Out.Host = r.In.Host
			r.SetXForwarded()
		},
		Transport: transport,
	}
	// A path match, not a ServeMux: a ServeMux would redirect paths it deems unclean instead of passing them on.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == TokenPath {
			issuer.ServeHTTP(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	})
}
