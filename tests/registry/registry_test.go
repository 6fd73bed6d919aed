// Package registry_test runs the connected registry exactly as the chart configures it: Distribution v3.1.2
// with the rendered config.yml and environment (paths remapped to temporary directories), our credential
// helper installed by the rendered init container, and a real parent registry (Distribution with htpasswd and
// TLS), all on 127.0.0.1. A client that trusts only the test CA and speaks only HTTPS proves pull-through with
// identical digests, refused pushes, the cache serving while the parent is down, and a restart while the
// parent is down; TestConformance runs the OCI distribution-spec conformance suite against it.
package registry_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"gopkg.in/yaml.v3"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/podemu"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

const (
	repo      = "demo/app"
	tag       = "v1"
	clusterIP = "10.96.0.50"
)

// parent is a Distribution registry with htpasswd and TLS, standing in for the cloud registry.
type parent struct {
	proc *process
	host string // 127.0.0.1:<port>
	dir  string // its configuration and, under data/, its storage
}

func startParent(t *testing.T, registryBin string, ca *testCA, user, password string) *parent {
	t.Helper()
	p := &parent{host: "127.0.0.1:" + strconv.Itoa(freePort(t)), dir: t.TempDir()}
	config, env, err := testenv.WriteParentConfig(testenv.ParentOptions{
		Dir: p.dir, Addr: p.host, CA: ca.CA, User: user, Password: password,
	})
	must(t, err)
	// Run as our own process, not testenv.StartParent, to count what the parent serves from its access log.
	p.proc = startProcess(t, "parent registry", registryBin, []string{"serve", config}, env)
	p.proc.waitReady(t, &http.Client{Transport: ca.transport(), Timeout: 2 * time.Second}, "https://"+p.host+"/")
	return p
}

// scenario is one way of pointing the chart at the parent.
type scenario struct {
	name     string
	user     string
	password string
	// values returns the chart values for a parent at host (127.0.0.1:<port>) and the Secrets the user
	// creates beside the release.
	values func(host string) (set []string, values map[string]any, external map[string]map[string]string)
}

// The ways of pointing the chart at the parent that the registry test runs; the conformance test uses the first.
var (
	byParentURL = scenario{
		name:     "a parent given by registry.parent.url with a credentials Secret should be mirrored",
		user:     "puller",
		password: "parent-password-1",
		values: func(host string) ([]string, map[string]any, map[string]map[string]string) {
			return []string{
					"registry.parent.url=https://" + host,
					"registry.parent.credentialsSecret=parent-credentials",
				}, map[string]any{
					// A connection string for another parent: the override must win for the URL and the
					// credentials.
					"connectionString": "ConnectedRegistryName=cr;SyncTokenName=wrong-token;SyncTokenPassword=wrong-password;" +
						"ParentGatewayEndpoint=unreachable.invalid;ParentEndpointProtocol=https",
				}, map[string]map[string]string{
					"parent-credentials": {"username": "puller", "password": "parent-password-1"},
				}
		},
	}
	byConnectionString = scenario{
		name:     "a parent given by the connection string should be mirrored with its sync token",
		user:     "cr-sync-token",
		password: "Sync+Token/Password=2",
		values: func(host string) ([]string, map[string]any, map[string]map[string]string) {
			return nil, map[string]any{
				"connectionString": "ConnectedRegistryName=cr;SyncTokenName=cr-sync-token;SyncTokenPassword=Sync+Token/Password=2;" +
					"ParentGatewayEndpoint=" + host + ";ParentEndpointProtocol=https",
			}, nil
		},
	}
)

func TestConnectedRegistry(t *testing.T) {
	registryBin := registryBinary(t)
	productBin := productBinary(t)
	ca := newTestCA(t)

	for _, sc := range []scenario{byParentURL, byConnectionString} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			runScenario(t, sc, registryBin, productBin, ca)
		})
	}
}

func runScenario(t *testing.T, sc scenario, registryBin, productBin string, ca *testCA) {
	began := time.Now()
	phase := began
	lap := func(what string) {
		t.Logf("timing: %s took %s", what, time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}

	// The parent, seeded with a multi-arch image.
	par := startParent(t, registryBin, ca, sc.user, sc.password)
	anonymous, err := (&http.Client{Transport: ca.transport()}).Get("https://" + par.host + "/v2/")
	must(t, err)
	anonymous.Body.Close()
	if anonymous.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the parent answers an anonymous /v2/ with %s, want 401: it must require credentials", anonymous.Status)
	}
	want := newMultiArch(t)
	parentClient := newClient(ca, &authn.Basic{Username: sc.user, Password: sc.password})
	parentRef, err := name.ParseReference(par.host + "/" + repo + ":" + tag)
	must(t, err)
	must(t, remote.WriteIndex(parentRef, want.index, parentClient.opts...))
	lap("starting and seeding the parent")

	pd, cr := startConnectedRegistry(t, sc, par.host, registryBin, productBin, ca)
	crClientHTTP := &http.Client{Transport: ca.transport(), Timeout: 5 * time.Second}
	lap("rendering the chart and starting the connected registry")

	crHost := "127.0.0.1:" + strconv.Itoa(pd.Port)
	byTag := crHost + "/" + repo + ":" + tag
	byDigest := crHost + "/" + repo + "@" + want.digest.String()
	dataDir := pd.HostPath["storage.filesystem.rootdirectory"]
	c := newClient(ca, nil)

	// a) The multi-arch index pulls through with identical digests, and lands in the cache.
	_, mark := par.proc.accessLog(0)
	if err := c.pull(byTag, want); err != nil {
		t.Fatalf("pull-through of %s: %v", byTag, err)
	}
	if err := c.pull(byDigest, want); err != nil {
		t.Fatalf("pull-through of %s: %v", byDigest, err)
	}
	waitBlobsStored(t, dataDir, want)
	cold, mark := par.proc.accessLog(mark)
	lap("a) cold pull through the connected registry")
	t.Logf("the parent served the cold pull: %s", cold)
	if cold.blobRequests == 0 {
		t.Fatalf("the parent's access log shows no blob request for the cold pull: did the pull go through the connected registry?")
	}
	if err := c.pull(byTag, want); err != nil {
		t.Fatalf("warm pull of %s: %v", byTag, err)
	}
	warm, _ := par.proc.accessLog(mark)
	t.Logf("the parent served the warm pull (parent up): %s", warm)
	if warm.blobBytes != 0 {
		t.Fatalf("the warm pull fetched blobs from the parent again (%s): the cache does not serve them", warm)
	}
	lap("a) warm pull")

	// b) Pushes are refused.
	checkPushRefused(t, c, crHost, crClientHTTP)

	// e) Only HTTPS with the test CA's certificate is served.
	checkPlainHTTPFails(t, crHost)
	checkUntrustedClientFails(t, crHost)
	lap("b) push refusal and e) TLS checks")

	// c) With the parent stopped, the cache still serves, by tag and by digest.
	par.proc.stop(t)
	if err := c.pull(byTag, want); err != nil {
		t.Fatalf("with the parent down, pulling %s from the cache: %v", byTag, err)
	}
	if err := c.pull(byDigest, want); err != nil {
		t.Fatalf("with the parent down, pulling %s from the cache: %v", byDigest, err)
	}
	lap("c) pull with the parent down")

	// d) A new pod (fresh emptyDirs, the same volume claim) starts while the parent is down and serves.
	cr.stop(t)
	restarted := pd.start(t)
	ready := restarted.waitReady(t, crClientHTTP, pd.readinessURL(t))
	t.Logf("timing: restarted with the parent down, the connected registry was ready %s after start", ready.Round(time.Millisecond))
	if err := c.pull(byTag, want); err != nil {
		t.Fatalf("after a restart with the parent down, pulling %s: %v", byTag, err)
	}
	if err := c.pull(byDigest, want); err != nil {
		t.Fatalf("after a restart with the parent down, pulling %s: %v", byDigest, err)
	}
	lap("d) restart with the parent down and pull")
	if _, err := os.Stat(filepath.Join(dataDir, "scheduler-state.json")); err == nil {
		t.Fatalf("the cache holds a TTL scheduler state: proxy.ttl is not 0s, so cached content would expire")
	}
	t.Logf("timing: scenario total %s", time.Since(began).Round(time.Millisecond))
}

// startConnectedRegistry renders the chart for the parent at parentHost (127.0.0.1:<port>) the way sc points at
// it, runs the registry pod as processes and waits for its readiness probe, checking the configuration it runs.
func startConnectedRegistry(t *testing.T, sc scenario, parentHost, registryBin, productBin string, ca *testCA) (*pod, *process) {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, "cr-connected-registry", []net.IP{net.ParseIP(clusterIP)}, []string{
		"cr-connected-registry", "cr-connected-registry.connected-registry", "cr-connected-registry.connected-registry.svc",
		"cr-connected-registry.connected-registry.svc.cluster.local",
	})
	set, values, external := sc.values(parentHost)
	set = append([]string{
		"service.clusterIP=" + clusterIP,
		"cert-manager.enabled=false",
		"cert-manager.install=false",
	}, set...)
	if values == nil {
		values = map[string]any{}
	}
	// As the Azure extension's protected settings give them: flat keys, base64 of PEM.
	values["tls.crt"] = base64.StdEncoding.EncodeToString(certPEM)
	values["tls.key"] = base64.StdEncoding.EncodeToString(keyPEM)
	values["tls.cacrt"] = base64.StdEncoding.EncodeToString(ca.CertPEM)
	values["registry"] = map[string]any{"parent": map[string]any{"caBundle": string(ca.CertPEM)}}
	res, err := chartrender.Render(chartrender.Options{Set: set, Values: values})
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	checkRenderedContract(t, res, "https://"+parentHost)

	pd := newPod(t, res, registryBin, productBin, external)
	cr := pd.start(t)
	crClientHTTP := &http.Client{Transport: ca.transport(), Timeout: 5 * time.Second}
	ready := cr.waitReady(t, crClientHTTP, pd.readinessURL(t))
	t.Logf("the connected registry runs the chart's %s with these container paths remapped: %s", podemu.ConfigKey, pd.RemappedKeys())
	t.Logf("timing: the connected registry answered its readiness probe %s after start", ready.Round(time.Millisecond))
	checkRunningConfig(t, pd)
	startLog := cr.out.String()
	gateURL := "http://" + pd.Listen[sidecarArgs(t, res, "parent-gate")["--listen"]]
	if !strings.Contains(startLog, "Registry configured as a proxy cache to "+gateURL) {
		t.Fatalf("the connected registry does not say it proxies %s, the parent gate", gateURL)
	}
	if strings.Contains(startLog, "TTL expiration scheduler") {
		t.Fatalf("the connected registry started a TTL expiration scheduler: cached content would expire (proxy.ttl must be 0s)")
	}
	return pd, cr
}

// checkRenderedContract checks what the test relies on in the rendered chart.
func checkRenderedContract(t *testing.T, res *chartrender.Result, parentURL string) {
	t.Helper()
	config, err := podemu.RenderedConfig(res)
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string]any
	if err := yaml.Unmarshal([]byte(config), &parsed); err != nil {
		t.Fatalf("the rendered %s is not YAML: %v", podemu.ConfigKey, err)
	}
	// The registry asks the parent gate, on the pod's loopback, which forwards to the parent.
	gate := sidecarArgs(t, res, "parent-gate")
	if gate["--parent"] != parentURL {
		t.Fatalf("the parent gate forwards to --parent=%q, want %q", gate["--parent"], parentURL)
	}
	for key, want := range map[string]any{
		"proxy.remoteurl":    "http://" + gate["--listen"],
		"proxy.exec.command": "/helpers/docker-credential-connected-registry",
		"proxy.username":     nil,
		"proxy.password":     nil,
	} {
		if got := lookup(parsed, key); got != want {
			t.Fatalf("the rendered %s has %s = %v, want %v:\n%s", podemu.ConfigKey, key, got, want, config)
		}
	}
	dep, _ := res.Find("Deployment", podemu.DeploymentName)
	for _, d := range res.Documents {
		if d.Kind() == "ConfigMap" && strings.Contains(d.YAML, "SyncTokenPassword") {
			t.Fatalf("ConfigMap %s holds the connection string", d.Name())
		}
	}
	if strings.Contains(dep.YAML, "SyncTokenPassword") {
		t.Fatalf("the Deployment holds the connection string")
	}
}

// sidecarArgs returns the --flag=value arguments of the Deployment's init container name.
func sidecarArgs(t *testing.T, res *chartrender.Result, name string) map[string]string {
	t.Helper()
	c, err := podemu.Container(res, "initContainers", name)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := c["args"].([]any)
	args := map[string]string{}
	for _, a := range raw {
		if k, v, ok := strings.Cut(fmt.Sprint(a), "="); ok {
			args[k] = v
		}
	}
	return args
}

// checkRunningConfig checks the settings the chart must give Distribution, in the file the registry runs.
func checkRunningConfig(t *testing.T, pd *pod) {
	t.Helper()
	for key, want := range map[string]string{
		"http.tls.certificate":                      "/etc/connected-registry/tls/tls.crt",
		"http.tls.key":                              "/etc/connected-registry/tls/tls.key",
		"storage.filesystem.rootdirectory":          "/var/lib/registry",
		"proxy.exec.command":                        "/helpers/docker-credential-connected-registry",
		"env CONNECTED_REGISTRY_PARENT_CREDENTIALS": "/etc/connected-registry/parent",
		"env SSL_CERT_FILE":                         "/etc/connected-registry/parent-ca/ca.crt",
	} {
		if got := pd.Remapped[key]; got != want {
			t.Errorf("%s is %q, want %q", key, got, want)
		}
	}
	https, err := pd.PortNamed("https")
	must(t, err)
	if pd.ContainerPort != https {
		t.Errorf("http.addr listens on %d but the container port named https is %d", pd.ContainerPort, https)
	}
	var running map[string]any
	must(t, yaml.Unmarshal([]byte(pd.Config), &running))
	for key, want := range map[string]any{
		"storage.maintenance.readonly.enabled": true,
		"proxy.ttl":                            "0s",
	} {
		if got := lookup(running, key); got != want {
			t.Errorf("the running configuration has %s = %v, want %v", key, got, want)
		}
	}
	c, err := pd.Container("containers", podemu.RegistryContainer)
	must(t, err)
	env, _ := c["env"].([]any)
	found := false
	for _, e := range env {
		em := e.(map[string]any)
		if em["name"] == "OTEL_TRACES_EXPORTER" && em["value"] == "none" {
			found = true
		}
	}
	if !found {
		t.Errorf("the registry container lacks OTEL_TRACES_EXPORTER=none")
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkPushRefused pushes with a registry client and with a raw upload request.
func checkPushRefused(t *testing.T, c *client, crHost string, httpClient *http.Client) {
	t.Helper()
	img, err := random.Image(1024, 1)
	must(t, err)
	ref, err := name.ParseReference(crHost + "/" + repo + ":pushed")
	must(t, err)
	pushErr := remote.Write(ref, img, c.opts...)
	err = pushErr
	if err == nil {
		t.Fatalf("a push to the connected registry succeeded; it must be refused")
	}
	var terr *transport.Error
	if !errors.As(err, &terr) || (terr.StatusCode != http.StatusMethodNotAllowed && !strings.Contains(err.Error(), "UNSUPPORTED")) {
		t.Fatalf("a push to the connected registry failed with %v, want 405 or UNSUPPORTED", err)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+crHost+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := httpClient.Do(req)
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("starting an upload answered %s %s, want 405", resp.Status, body)
	}
	t.Logf("b) push refused: the client got %v; a raw upload start got %s %q", pushErr, resp.Status, strings.TrimSpace(string(body)))
}

// checkPlainHTTPFails makes a plain-HTTP request, raw and through a registry client forced to HTTP.
func checkPlainHTTPFails(t *testing.T, crHost string) {
	t.Helper()
	plain := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	resp, err := plain.Get("http://" + crHost + "/v2/")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Docker-Distribution-Api-Version") != "" ||
			!strings.Contains(string(body), "HTTP request to an HTTPS server") {
			t.Fatalf("a plain-HTTP request to the connected registry answered %s %q: it must only speak TLS", resp.Status, body)
		}
		t.Logf("e) plain HTTP refused: %s %q", resp.Status, strings.TrimSpace(string(body)))
	} else {
		t.Logf("e) plain HTTP refused: %v", err)
	}

	httpOnly := &schemeGuard{base: &http.Transport{Proxy: nil}, scheme: "http"}
	ref, err := name.ParseReference(crHost+"/"+repo+":"+tag, name.Insecure)
	must(t, err)
	_, err = remote.Get(ref, remote.WithTransport(httpOnly), remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1}))
	if err == nil {
		t.Fatalf("a registry client limited to plain HTTP pulled from the connected registry")
	}
}

// checkUntrustedClientFails proves the registry serves the certificate from the chart values: a client with
// the system roots only must reject it.
func checkUntrustedClientFails(t *testing.T, crHost string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+crHost+"/v2/", nil)
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{}}}).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a client trusting only the system roots accepted the connected registry's certificate")
	}
	var certErr *tls.CertificateVerificationError
	if !errors.As(err, &certErr) {
		t.Fatalf("a client trusting only the system roots failed with %v, want a certificate verification error", err)
	}
}

// lookup returns the value at a dotted path of a parsed YAML document.
func lookup(m map[string]any, path string) any {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}
