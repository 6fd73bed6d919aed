package preflight_test

import (
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/preflight"
)

// parentServer answers as a registry with token auth (realm on its own host, as ACR), with Basic auth, or
// without credentials; the sync token of goodCS is the one it accepts.
func parentServer(t *testing.T, scheme string) (*httptest.Server, string) {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		good := ok && user == "edge1-sync-token" && pass == "s3cret-password"
		switch {
		case scheme == "anonymous":
			io.WriteString(w, "{}")
		case scheme == "bearer" && r.URL.Path == "/oauth2/token":
			if !good || r.URL.Query().Get("account") != "edge1-sync-token" || r.URL.Query().Get("service") != srv.Listener.Addr().String() {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}`)
				return
			}
			io.WriteString(w, `{"access_token":"t","expires_in":300}`)
		case scheme == "bearer":
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/oauth2/token",service="%s"`, srv.URL, srv.Listener.Addr()))
			w.WriteHeader(http.StatusUnauthorized)
		case good:
			io.WriteString(w, "{}")
		default:
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		}
	}))
	t.Cleanup(srv.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return srv, ca
}

func TestParent(t *testing.T) {
	t.Parallel()
	bearer, bearerCA := parentServer(t, "bearer")
	basic, basicCA := parentServer(t, "basic")
	anonymous, anonymousCA := parentServer(t, "anonymous")
	wrongCS := strings.Replace(goodCS, "s3cret-password", "wr0ng-password", 1)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closed.Addr().String()
	closed.Close()
	parentURL := func(u string) func(*preflight.Config) {
		return func(c *preflight.Config) { c.ParentURL = u }
	}
	secretCfg := func(u string) func(*preflight.Config) {
		return func(c *preflight.Config) { c.ParentURL, c.ParentCredentialsSecret = u, "parent-credentials" }
	}
	credentials := func(user, pass string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "parent-credentials", Namespace: ns},
			Data: map[string][]byte{"username": []byte(user), "password": []byte(pass)}}
	}
	in := func(cs, ca string) *corev1.Secret {
		return inputSecret(map[string]string{"connectionString": cs, preflight.InputParentCA: ca})
	}
	runTable(t, "parent", []testCase{
		{
			name: "no parent URL should skip the check, so no test or cluster without one reaches out",
			want: "not checked: no parent URL given",
		},
		{
			name:    "a token parent that gives the sync token a token should pass",
			cluster: cluster{objects: with(in(goodCS, bearerCA))},
			cfg:     parentURL(bearer.URL),
			want:    "the parent's token endpoint " + bearer.Listener.Addr().String() + " accepts sync token edge1-sync-token",
		},
		{
			name:    "a token parent that refuses the sync token should fail, naming the token and the values to fix, never the password",
			cluster: cluster{objects: with(in(wrongCS, bearerCA))},
			cfg:     parentURL(bearer.URL),
			status:  preflight.Fail,
			want: "the parent's token endpoint " + bearer.Listener.Addr().String() + " refused sync token edge1-sync-token (401 Unauthorized: " +
				"UNAUTHORIZED incorrect username or password): check SyncTokenName and SyncTokenPassword in connectionString",
		},
		{
			name:    "a Basic-auth parent that refuses the credentials Secret should fail, naming the Secret",
			cluster: cluster{objects: with(in(goodCS, basicCA), credentials("edge1-sync-token", "wr0ng-password"))},
			cfg:     secretCfg(basic.URL),
			status:  preflight.Fail,
			want: "the parent " + basic.Listener.Addr().String() + " refused sync token edge1-sync-token (401 Unauthorized: UNAUTHORIZED authentication required): " +
				"check the username and password of Secret parent-credentials (registry.parent.credentialsSecret)",
		},
		{
			name:    "a Basic-auth parent that accepts the credentials Secret should pass",
			cluster: cluster{objects: with(in(wrongCS, basicCA), credentials("edge1-sync-token", "s3cret-password"))},
			cfg:     secretCfg(basic.URL),
			want:    "the parent " + basic.Listener.Addr().String() + " accepts sync token edge1-sync-token",
		},
		{
			name:    "a parent that asks for no credentials should pass, saying the token is not checked",
			cluster: cluster{objects: with(in(goodCS, anonymousCA))},
			cfg:     parentURL(anonymous.URL),
			want:    "the parent " + anonymous.Listener.Addr().String() + " answers; it asked for no credentials, so sync token edge1-sync-token is not checked",
		},
		{
			name:    "a parent the cluster cannot reach should only warn: a disconnected site installs all the same",
			cluster: cluster{objects: with(in(goodCS, bearerCA))},
			cfg:     parentURL("https://" + closedAddr),
			status:  preflight.Warn,
			want: "the parent " + closedAddr + " cannot be reached from the cluster (dial tcp " + closedAddr + ": connect: connection refused): " +
				"the install goes on, and the registry fills its cache once the parent answers",
		},
		{
			name:    "a parent whose certificate the registry will not trust should fail, naming registry.parent.caBundle",
			cluster: cluster{objects: with(in(goodCS, ""))},
			cfg:     parentURL(bearer.URL),
			status:  preflight.Fail,
			want: "the parent " + bearer.Listener.Addr().String() + " serves a certificate the registry will not trust " +
				"(x509: certificate signed by unknown authority): put the CA that signed it in registry.parent.caBundle",
		},
	})
}
