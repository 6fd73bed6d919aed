package registry_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
	"github.com/connected-registry/connected-registry/internal/cli"
	"github.com/connected-registry/connected-registry/internal/presync"
	"github.com/connected-registry/connected-registry/internal/registryapi"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/podemu"
)

const tokensSecret = "cr-client-tokens"

func clientTokenEntry(t *testing.T, password, scope string) []byte {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	must(t, err)
	return []byte("password: " + string(h) + "\nscope:\n" + scope)
}

// startTokenServer runs the chart's token-server container in this process: the command's own flags, Complete
// and Run, with the chart's arguments (remapped onto the pod's directories by podemu), and a fake API holding the
// tokens Secret in place of the API server podemu has not. registryPort is where the registry's listener
// (127.0.0.1:5443 in the pod) moved.
func startTokenServer(t *testing.T, c podemu.Command, cs *fake.Clientset, registryPort int) {
	t.Helper()
	o := &app.TokenServerOptions{KubeOptions: app.KubeOptions{Common: &app.Common{Command: "token-server",
		Log: slog.New(slog.NewTextHandler(&testWriter{t: t}, nil))}, Client: cs}}
	fs := cli.NewFlagSet("token-server", cli.MapEnv(nil), io.Discard)
	o.AddFlags(fs)
	fs.StringVar(&o.LogLevel, "log-level", "", "info", "registered by Execute for every command")
	// The health port is fixed in the pod, and the registry's listener moved; here tests run side by side.
	must(t, fs.Parse(append(append([]string{}, c.Args[1:]...), "--health-addr=",
		"--registry-url=https://127.0.0.1:"+strconv.Itoa(registryPort)+"/v2/")))
	must(t, o.Complete())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("token server: %v", err)
		}
	})
	must(t, podemu.WaitListening(o.Listen, 10*time.Second, func() bool { return false }))
}

// getRaw GETs u with a bearer token (if any) and the Accept types given, returning the answer and its body.
func getRaw(c *http.Client, u, bearer string, accept ...string) (*http.Response, string) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		panic(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for _, a := range accept {
		req.Header.Add("Accept", a)
	}
	resp, err := c.Do(req)
	if err != nil {
		return &http.Response{StatusCode: 0, Header: http.Header{}}, err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// challengeParam returns one parameter of a WWW-Authenticate Bearer challenge.
func challengeParam(ch, name string) string {
	i := strings.Index(ch, name+`="`)
	if i < 0 {
		return ""
	}
	rest := ch[i+len(name)+2:]
	j := strings.Index(rest, `"`)
	if j < 0 {
		return ""
	}
	return rest[:j]
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestClientTokens runs the chart's registry pod with clientTokens.enabled against an ACR-like parent: a client
// token pulls the repositories its scope lists, and nothing else; anonymous requests and the catalog are
// refused; a revoked token is refused within seconds, without a restart.
func TestClientTokens(t *testing.T) {
	t.Parallel()
	registryBin := registryBinary(t)
	productBin := productBinary(t)
	ca := newTestCA(t)
	par := startACRParent(t, registryBin, ca)
	want := newMultiArch(t)
	must(t, par.Push(context.Background(), repo+":"+tag, want.index))
	must(t, par.Push(context.Background(), "other/app:"+tag, want.index))

	certPEM, keyPEM := ca.issue(t, "cr-connected-registry", []net.IP{net.ParseIP(clusterIP)}, nil)
	res, err := chartrender.Render(chartrender.Options{
		Set: []string{"service.clusterIP=" + clusterIP, "cert-manager.enabled=false", "cert-manager.install=false",
			"clientTokens.enabled=true", "clientTokens.secret=" + tokensSecret, "clientTokens.tokenLifetime=2m"},
		Values: map[string]any{
			"connectionString": par.ConnectionString("cr"),
			"tls.crt":          base64.StdEncoding.EncodeToString(certPEM), "tls.key": base64.StdEncoding.EncodeToString(keyPEM),
			"tls.cacrt": base64.StdEncoding.EncodeToString(ca.CertPEM),
			"registry":  map[string]any{"parent": map[string]any{"caBundle": string(ca.CertPEM)}},
		},
	})
	must(t, err)

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: chartrender.DefaultNamespace, Name: tokensSecret}, Data: map[string][]byte{
		"reader": clientTokenEntry(t, "reader-pw", "- repositories: [\"demo/*\"]\n  actions: [read]\n"),
		"lister": clientTokenEntry(t, "lister-pw", "- repositories: [\"*\"]\n  actions: [metadata/read]\n"),
	}}
	cs := fake.NewClientset(secret)
	pd := newPod(t, res, registryBin, productBin, nil)
	registry, err := pd.Start(func(c podemu.Command) error {
		if c.Name == "token-server" {
			startTokenServer(t, c, cs, pd.Port)
			return nil
		}
		return pd.startSidecar(t, c)
	})
	must(t, err)
	cr := startProcess(t, "connected registry", registry.Bin, registry.Args, registry.Env)
	cr.waitReady(t, &http.Client{Transport: ca.transport(), Timeout: 5 * time.Second}, pd.readinessURL(t))

	// Clients reach the Service's 443, which the chart maps to the token server's front (its named port
	// "token"): the front answers /token and passes the rest to the registry.
	front := pd.Listen[":5001"]
	if front == "" {
		t.Fatalf("the token server's --listen=:5001 was not moved to this host: %v", pd.Listen)
	}
	hosts := map[string]string{clusterIP + ":443": front}
	tr := ca.transport().Clone()
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if local, ok := hosts[addr]; ok {
			addr = local
		}
		return dialer.DialContext(ctx, network, addr)
	}
	httpc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	// pullWith pulls repo:tag as containerd does: the registry's challenge names the realm, the client fetches a
	// token there with the client token's name and password (Basic), then gets the index, each manifest and
	// each blob with it, checking every digest. (ggcrPull below is go-containerregistry's own client.)
	pullWith := func(user, pw, repository string) error {
		resp, _ := getRaw(httpc, "https://"+clusterIP+":443/v2/", "")
		ch := resp.Header.Get("WWW-Authenticate")
		realm, service := challengeParam(ch, "realm"), challengeParam(ch, "service")
		if resp.StatusCode != http.StatusUnauthorized || realm == "" {
			return fmt.Errorf("GET /v2/ answered %d %q, want a 401 Bearer challenge", resp.StatusCode, ch)
		}
		q := url.Values{"service": {service}, "scope": {"repository:" + repository + ":pull"}}
		req, err := http.NewRequest(http.MethodGet, realm+"?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		tresp, err := httpc.Do(req)
		if err != nil {
			return err
		}
		var body struct{ Token string }
		_ = json.NewDecoder(tresp.Body).Decode(&body)
		tresp.Body.Close()
		if tresp.StatusCode != http.StatusOK {
			return fmt.Errorf("the token endpoint answered %d", tresp.StatusCode)
		}
		fetch := func(kind, ref, wantDigest string) error {
			r, b := getRaw(httpc, "https://"+clusterIP+":443/v2/"+repository+"/"+kind+"/"+ref, body.Token,
				"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json")
			if r.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s/%s answered %d %s", kind, ref, r.StatusCode, r.Header.Get("WWW-Authenticate"))
			}
			if got := digest.FromString(b).String(); wantDigest != "" && got != wantDigest {
				return fmt.Errorf("%s %s has digest %s, want %s", kind, ref, got, wantDigest)
			}
			return nil
		}
		if err := fetch("manifests", tag, want.digest.String()); err != nil {
			return err
		}
		for d := range want.manifests {
			if err := fetch("manifests", d.String(), d.String()); err != nil {
				return err
			}
		}
		for _, d := range want.contentBlobs() {
			if err := fetch("blobs", d.String(), d.String()); err != nil {
				return err
			}
		}
		return nil
	}
	get := func(path, bearer string) (*http.Response, string) {
		return getRaw(httpc, "https://"+clusterIP+":443"+path, bearer)
	}
	token := func(user, pw string, scopes ...string) (int, string) {
		q := url.Values{"service": {clusterIP + ":443"}, "scope": scopes}
		req, err := http.NewRequest(http.MethodGet, "https://"+clusterIP+":443/token?"+q.Encode(), nil)
		must(t, err)
		req.SetBasicAuth(user, pw)
		resp, err := httpc.Do(req)
		must(t, err)
		defer resp.Body.Close()
		var body struct{ Token string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Token
	}

	t.Run("anonymous requests get 401 with the token endpoint as realm", func(t *testing.T) {
		resp, _ := get("/v2/", "")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous GET /v2/ answered %d, want 401", resp.StatusCode)
		}
		want := `Bearer realm="https://` + clusterIP + `:443/token",service="` + clusterIP + `:443"`
		if got := resp.Header.Get("WWW-Authenticate"); got != want {
			t.Fatalf("challenge %q, want %q", got, want)
		}
		if resp, _ := get("/v2/_catalog", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous GET /v2/_catalog answered %d, want 401", resp.StatusCode)
		}
		if err := pullWith("", "", repo); err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("an anonymous pull: %v, want a 401", err)
		}
	})
	t.Run("a client token pulls the repositories of its scope", func(t *testing.T) {
		if err := pullWith("reader", "reader-pw", repo); err != nil {
			t.Fatalf("pull with the reader token: %v", err)
		}
	})
	t.Run("go-containerregistry pulls with a client token, the realm being on the registry's own host:port", func(t *testing.T) {
		// crane and ko refuse a realm on another port of a private address (an SSRF guard of
		// go-containerregistry); with the realm on the registry's own host:port they pull, verifying every digest.
		ref, err := name.ParseReference(clusterIP + ":443/" + repo + ":" + tag)
		must(t, err)
		idx, err := remote.Index(ref, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: "reader", Password: "reader-pw"}))
		if err != nil {
			t.Fatalf("go-containerregistry: %v", err)
		}
		if err := validate.Index(idx); err != nil {
			t.Fatalf("go-containerregistry read %s: %v", ref, err)
		}
		_, err = remote.Index(ref, remote.WithTransport(tr))
		if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Fatalf("go-containerregistry without credentials: %v, want UNAUTHORIZED", err)
		}
	})
	t.Run("a client token gets nothing outside its scope", func(t *testing.T) {
		err := pullWith("reader", "reader-pw", "other/app")
		if err == nil || !(strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "403")) {
			t.Fatalf("pull of other/app with the reader token: %v, want 401 or 403", err)
		}
		status, tok := token("reader", "reader-pw", "repository:other/app:pull")
		if status != http.StatusOK {
			t.Fatalf("token request answered %d", status)
		}
		resp, body := get("/v2/other/app/manifests/"+tag, tok)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
			t.Fatalf("other/app with a token without it: %d %s %s, want 401 insufficient_scope", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	})
	t.Run("the catalog needs metadata/read", func(t *testing.T) {
		_, tok := token("reader", "reader-pw", "registry:catalog:*")
		if resp, _ := get("/v2/_catalog", tok); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the catalog with a read-only token answered %d, want 401", resp.StatusCode)
		}
		_, tok = token("lister", "lister-pw", "registry:catalog:*")
		resp, body := get("/v2/_catalog", tok)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, repo) {
			t.Fatalf("the catalog with metadata/read answered %d %s, want 200 naming %s", resp.StatusCode, body, repo)
		}
	})
	t.Run("a wrong password gets no token", func(t *testing.T) {
		if status, _ := token("reader", "wrong", "repository:"+repo+":pull"); status != http.StatusUnauthorized {
			t.Fatalf("a wrong password answered %d, want 401", status)
		}
	})
	t.Run("the pre-sync pulls with a client token, through bearer tokens of the token endpoint", func(t *testing.T) {
		fresh := newMultiArch(t)
		must(t, par.Push(context.Background(), repo+":presync", fresh.index))
		run := func(user, pw, repositories string) (*presync.Status, error) {
			sels, err := presync.ParseRepositories("sync.repositories", repositories)
			must(t, err)
			r := &presync.Runner{Registry: &url.URL{Scheme: "https", Host: clusterIP + ":443"}, HTTPClient: httpc,
				Username: user, Password: pw, Repositories: sels, Concurrency: 2, Store: &presync.MemoryStore{}, RegistryWait: 10 * time.Second}
			return r.Run(context.Background())
		}
		before := par.BlobGets()
		st, err := run("reader", "reader-pw", `[{"name":"`+repo+`","tags":["presync"]}]`)
		if err != nil || st.Run.TagsSynced != 1 || st.Run.TagsFailed != 0 {
			t.Fatalf("the sync with the reader token: %v; %s", err, st.Summary())
		}
		if got, want := par.BlobGets()-before, len(fresh.contentBlobs()); got != want {
			t.Errorf("the sync fetched %d blobs from the parent, want the image's %d", got, want)
		}
		before = par.BlobGets()
		if st, err = run("reader", "reader-pw", `[{"name":"`+repo+`","tags":["presync"]}]`); err != nil || par.BlobGets() != before {
			t.Errorf("a second sync: %v, %d more blobs from the parent, want none; %s", err, par.BlobGets()-before, st.Summary())
		}

		st, err = run("reader", "reader-pw", `[{"name":"other/app","tags":["`+tag+`"]}]`)
		if !errors.Is(err, presync.ErrNothingSynced) || !strings.Contains(repoError(st, "other/app"), "sync.credentialsSecret) may not read it") {
			t.Errorf("a sync outside the token's scope: %v; the status says %q, want it to name sync.credentialsSecret", err, repoError(st, "other/app"))
		}
		_, err = run("reader", "wrong-password-1", `[{"name":"`+repo+`","tags":["presync"]}]`)
		if err == nil || !strings.Contains(err.Error(), registryapi.ErrTokenRefused.Error()+": 10.96.0.50:443/token answered 401 to user reader") || strings.Contains(err.Error(), "wrong-password-1") {
			t.Errorf("a sync with a wrong password: %v, want the token endpoint's refusal without the password", err)
		}
	})
	t.Run("a revoked token is refused within seconds, without a restart", func(t *testing.T) {
		secret.Data = map[string][]byte{"lister": secret.Data["lister"]}
		_, err := cs.CoreV1().Secrets(chartrender.DefaultNamespace).Update(context.Background(), secret, metav1.UpdateOptions{})
		must(t, err)
		deadline := time.Now().Add(5 * time.Second)
		for {
			status, _ := token("reader", "reader-pw", "repository:"+repo+":pull")
			if status == http.StatusUnauthorized {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("5 s after its revocation the reader token still gets %d", status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		err = pullWith("reader", "reader-pw", repo)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("a pull with the revoked token: %v, want 401", err)
		}
	})
}

// repoError is the status's error of a repository, or "".
func repoError(st *presync.Status, name string) string {
	if st == nil {
		return ""
	}
	for _, r := range st.Repositories {
		if r.Name == name {
			return r.Error
		}
	}
	return ""
}
