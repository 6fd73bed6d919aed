package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/podemu"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

const (
	parentUser     = "cr-sync-token"
	parentPassword = "Sync+Token/Password=2"
	clusterIP      = "10.96.0.50"
)

// env is one benchmark run's world on 127.0.0.1: a CA, the parent registry seeded with the images, the raw
// TLS file server holding the same bytes, and connected registries started from the chart on demand.
type env struct {
	dir         string
	registryBin string
	productBin  string
	log         io.Writer
	ca          *testenv.CA

	parentHost string // name:port
	parentIP   string // the loopback address the name resolves to
	// parentByName says the parent is addressed by a host name: Go's HTTP clients never use a proxy for a
	// loopback IP literal or "localhost", so only then does the registry reach it through the parent gate.
	parentByName bool
	parentConfig string
	parentEnv    []string
	parent       *process

	rawHost string
	raw     *process

	crCert, crKey []byte
}

// connected is one connected registry: the chart's pod as processes.
type connected struct {
	variant  variant
	pod      *podemu.Pod
	proc     *process
	sidecars []*process
	host     string
	edit     func(*podemu.Command)
}

// variant is a set of chart values the connected registry is rendered with.
type variant struct {
	name string
	set  []string // --set expressions
	env  []string // added to the registry container's environment: experiments only, not a chart setting
}

func newEnv(dir, registryBin, productBin string, log io.Writer) (*env, error) {
	ca, err := testenv.NewCA("connected-registry benchmark CA")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, registryBin: registryBin, productBin: productBin, log: log, ca: ca}
	e.crCert, e.crKey, err = ca.Issue("cr-connected-registry", []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(clusterIP)},
		[]string{"cr-connected-registry", "cr-connected-registry.connected-registry.svc"})
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (e *env) httpClient() *http.Client {
	return &http.Client{Transport: e.ca.Transport(), Timeout: 5 * time.Second}
}

// startParent starts the parent registry, on the same port and storage when it ran before.
func (e *env) startParent(ctx context.Context) error {
	if e.parentHost == "" {
		port, err := podemu.FreePort()
		if err != nil {
			return err
		}
		name, ip := testenv.LoopbackName()
		e.parentHost, e.parentIP, e.parentByName = net.JoinHostPort(name, strconv.Itoa(port)), ip, name != ip
		e.parentConfig, e.parentEnv, err = testenv.WriteParentConfig(testenv.ParentOptions{
			Dir: filepath.Join(e.dir, "parent"), Addr: e.parentHost, CA: e.ca, User: parentUser, Password: parentPassword,
		})
		if err != nil {
			return err
		}
	}
	var err error
	for i := 0; i < 50; i++ { // the port may still be held by the silent parent a moment ago
		if e.parent, err = startProcess("parent registry", e.registryBin, []string{"serve", e.parentConfig}, e.parentEnv); err != nil {
			return err
		}
		if err = e.parent.waitReady(ctx, e.httpClient(), "https://"+e.parentHost+"/"); err == nil {
			return nil
		}
		e.parent.stop()
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (e *env) stopParent() { e.parent.stop() }

// push writes the image to the parent.
func (e *env) push(img *testImage) error {
	ref, err := name.ParseReference(e.parentHost + "/" + img.repo + ":" + img.tag)
	if err != nil {
		return err
	}
	opts := []remote.Option{remote.WithTransport(e.ca.Transport()),
		remote.WithAuth(&authn.Basic{Username: parentUser, Password: parentPassword})}
	if img.index != nil {
		return remote.WriteIndex(ref, img.index, opts...)
	}
	return remote.Write(ref, img.image, opts...)
}

// startRaw starts the raw TLS file server (this program, run as a child) over dir.
func (e *env) startRaw(ctx context.Context, dir string) error {
	port, err := podemu.FreePort()
	if err != nil {
		return err
	}
	e.rawHost = "127.0.0.1:" + strconv.Itoa(port)
	cert, key := filepath.Join(e.dir, "raw.crt"), filepath.Join(e.dir, "raw.key")
	certPEM, keyPEM, err := e.ca.Issue("raw TLS file server", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	e.raw, err = startProcess("raw TLS file server", self, nil, []string{
		"PATH=" + os.Getenv("PATH"), roleEnv + "=" + roleRawTLS, "CR_BENCH_ROOT=" + dir, "CR_BENCH_ADDR=" + e.rawHost,
		"CR_BENCH_CERT=" + cert, "CR_BENCH_KEY=" + key,
	})
	if err != nil {
		return err
	}
	return e.raw.waitReady(ctx, e.httpClient(), "https://"+e.rawHost+"/")
}

// render renders the chart for this parent, as tests/registry does: the parent and its sync token from the
// connection string, the parent's CA as registry.parent.caBundle, a bring-your-own certificate from flat
// protected-settings keys, and the variant's values.
func (e *env) render(v variant) (*chartrender.Result, error) {
	return e.renderFor(v, e.parentHost)
}

// renderFor renders the chart as render does, for the parent at parentHost (the parent itself, or a link to it).
func (e *env) renderFor(v variant, parentHost string) (*chartrender.Result, error) {
	set := append([]string{
		"service.clusterIP=" + clusterIP,
		"cert-manager.enabled=false",
		"cert-manager.install=false",
	}, v.set...)
	values := map[string]any{
		"connectionString": "ConnectedRegistryName=cr;SyncTokenName=" + parentUser + ";SyncTokenPassword=" + parentPassword +
			";ParentGatewayEndpoint=" + parentHost + ";ParentEndpointProtocol=https",
		"tls.crt":   base64.StdEncoding.EncodeToString(e.crCert),
		"tls.key":   base64.StdEncoding.EncodeToString(e.crKey),
		"tls.cacrt": base64.StdEncoding.EncodeToString(e.ca.CertPEM),
		"registry":  map[string]any{"parent": map[string]any{"caBundle": string(e.ca.CertPEM)}},
	}
	res, err := chartrender.Render(chartrender.Options{Set: set, Values: values})
	if err != nil {
		return nil, fmt.Errorf("rendering the chart (%s): %w", v.name, err)
	}
	return res, nil
}

// startConnected starts a connected registry of variant v with an empty cache in dir.
func (e *env) startConnected(ctx context.Context, v variant, dir string) (*connected, error) {
	return e.startConnectedVia(ctx, v, dir, e.parentHost)
}

// startConnectedVia starts a connected registry as startConnected does, for the parent at parentHost.
func (e *env) startConnectedVia(ctx context.Context, v variant, dir, parentHost string) (*connected, error) {
	res, err := e.renderFor(v, parentHost)
	if err != nil {
		return nil, err
	}
	return e.startPod(ctx, res, v, dir, podemu.Options{}, nil)
}

// startPod starts a registry pod of the rendered chart res with an empty cache volume in dir. opts may add the
// Secrets the user creates and the pod's address; edit, if not nil, changes each sidecar's command before it
// starts (what the cluster would provide differently, such as the peers' DNS name).
func (e *env) startPod(ctx context.Context, res *chartrender.Result, v variant, dir string, opts podemu.Options, edit func(*podemu.Command)) (*connected, error) {
	port, err := podemu.FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	opts.Dir, opts.RegistryBin, opts.ProductBin, opts.Port = dir, e.registryBin, e.productBin, port
	pd, err := podemu.New(res, opts)
	if err != nil {
		return nil, err
	}
	c := &connected{variant: v, pod: pd, host: "127.0.0.1:" + strconv.Itoa(port), edit: edit}
	return c, c.start(ctx, e)
}

// start starts (or restarts) the registry process of c; the cache volume is kept.
func (c *connected) start(ctx context.Context, e *env) error {
	var sidecars []podemu.Command
	registry, err := c.pod.Start(func(sc podemu.Command) error {
		sidecars = append(sidecars, sc)
		return nil
	})
	if err != nil {
		return err
	}
	env := append(registry.Env, c.variant.env...)
	for _, sc := range sidecars {
		if c.edit != nil {
			c.edit(&sc)
		}
		p, err := startProcess("sidecar "+sc.Name, sc.Bin, sc.Args, sc.Env)
		if err != nil {
			return err
		}
		c.sidecars = append(c.sidecars, p)
	}
	for _, local := range c.pod.Listen {
		if err := podemu.WaitListening(local, 10*time.Second, nil); err != nil {
			c.stop()
			return fmt.Errorf("a sidecar of the connected registry: %w", err)
		}
	}
	if c.proc, err = startProcess("connected registry ("+c.variant.name+")", registry.Bin, registry.Args, env); err != nil {
		return err
	}
	if err := c.proc.waitReady(ctx, e.httpClient(), "https://"+c.host+"/"); err != nil {
		c.stop()
		return err
	}
	return nil
}

// stop stops the registry, then its sidecars, as the kubelet does with native sidecars.
func (c *connected) stop() {
	c.proc.stop()
	for _, sc := range c.sidecars {
		sc.stop()
	}
	c.sidecars = nil
}

// remove stops c and deletes its directories.
func (c *connected) remove() {
	c.stop()
	_ = os.RemoveAll(c.pod.Dir())
}

// gateLog returns what the parent gate logged at warning level or above: the parents it found silent.
func (c *connected) gateLog() []string {
	var out []string
	for _, sc := range c.sidecars {
		for _, line := range strings.Split(sc.out.String(), "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				out = append(out, line)
			}
		}
	}
	return out
}

// waitStored waits until c's cache holds every blob of img: Distribution commits a proxied blob after it has
// streamed it to the client.
func (c *connected) waitStored(img *testImage, timeout time.Duration) error {
	return waitBlobs(context.Background(), img, timeout, "the connected registry's cache", func(d v1.Hash) bool {
		_, err := os.Stat(filepath.Join(c.pod.DataDir(), "docker", "registry", "v2", "blobs", d.Algorithm, d.Hex[:2], d.Hex, "data"))
		return err == nil
	})
}

// waitBlobs waits until has holds for every blob of img, where is what has looks at.
func waitBlobs(ctx context.Context, img *testImage, timeout time.Duration, where string, has func(v1.Hash) bool) error {
	digests, err := blobDigests(img)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, d := range digests {
			if !has(d) {
				missing = append(missing, d.String())
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s lacks %d blobs of %s %s after the pull: %s", where, len(missing), img.repo, timeout, strings.Join(missing, ", "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// registryBinary finds Distribution v3.1.2's registry binary, which ci/tools.sh builds.
func registryBinary(flagValue string) (string, error) {
	bin := flagValue
	if bin == "" {
		bin = os.Getenv("REGISTRY_BIN")
	}
	if bin == "" {
		bin = filepath.Join(chartrender.RepoRoot(), "bin", "registry")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("the Distribution registry binary %s is missing: run ci/tools.sh registry (or set REGISTRY_BIN)", bin)
	}
	return bin, nil
}

// freeze stops a process without closing its sockets (SIGSTOP): a hung parent whose kernel still accepts
// connections and acknowledges data.
func freeze(p *process) error { return p.cmd.Process.Signal(syscall.SIGSTOP) }

func thaw(p *process) error { return p.cmd.Process.Signal(syscall.SIGCONT) }

func joinSet(set []string) string {
	if len(set) == 0 {
		return "chart defaults"
	}
	return "`" + strings.Join(set, "`, `") + "`"
}
