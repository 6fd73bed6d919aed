// Package podemu runs the registry pod the Helm chart renders (chart/connected-registry) as local processes,
// for the registry test (tests/registry) and the registry benchmark (ci/bench/registry).
//
// The Deployment's volumes become directories: ConfigMaps and Secrets from the render (or from Secrets the user
// creates, given as external), emptyDirs and the PersistentVolumeClaim as directories. The init containers run
// with our connected-registry binary, which is what the product image runs. Native sidecars (init containers with restartPolicy
// Always) are handed to the caller to start, with their --listen addresses moved to free ports of 127.0.0.1.
// The registry container's command line, environment and Distribution configuration are prepared as rendered,
// but that every absolute path under a volume mount (in arguments, environment and configuration) moves onto the
// host through the mounts, http.addr and the debug and metrics listeners move to ports of 127.0.0.1, and the
// sidecars' loopback addresses (in environment and configuration values, such as HTTPS_PROXY and
// proxy.remoteurl) move to their ports here. A sidecar listening on every interface (--listen=:port, the token
// server) is reached through the Service: addresses naming it stay as rendered, and clients map them. Nothing
// else changes.
//
// It does not emulate the Kubernetes API server, nor what needs it: a projected service account token is an
// empty directory, and the tls-reloader sidecar, which reads the TLS Secret through the API, is stood in for by
// writing the Secret's tls.crt and tls.key into its --tls-dir once. Nor does it emulate images other than the
// product image in init containers, probes, restarts or resource limits (but for resolving limits.cpu). Starting
// and stopping processes is left to the caller.
package podemu

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// The chart's objects for release "cr" (chartrender's default release name and namespace).
const (
	DeploymentName    = "cr-connected-registry"
	ConfigMapName     = "cr-connected-registry-config"
	ConfigKey         = "config.yml"
	RegistryContainer = "registry"
)

// Options say where and with what the pod runs.
type Options struct {
	// Dir holds the pod's volumes and the registry's HOME.
	Dir string
	// RegistryBin is the Distribution binary the registry container runs.
	RegistryBin string
	// ProductBin is our connected-registry binary, standing in for the product image.
	ProductBin string
	// External holds the Secrets the user creates and the chart only references: name → key → value.
	External map[string]map[string]string
	// Port is the port of 127.0.0.1 the registry's HTTPS listener (http.addr) moves to.
	Port int
	// ProductEnv is added to the environment of every container that runs the connected-registry binary, such as
	// KUBECONFIG for a stand-in API server.
	ProductEnv []string
	// PodIP is the pod's address the downward API's status.podIP gives (a loopback address here, one per replica
	// when several run side by side); empty refuses a container that reads it.
	PodIP string
	// Logf, if not nil, receives what the init containers print and what the tls-reloader stand-in did.
	Logf func(format string, args ...any)
}

// Pod is the registry Deployment's pod, run as local processes by its caller.
type Pod struct {
	opts Options
	res  *chartrender.Result
	spec map[string]any

	// Port is the port of 127.0.0.1 the registry's HTTPS listener is moved to.
	Port int

	// Filled by Start.

	// Volumes maps volume names to host directories.
	Volumes map[string]string
	// ConfigPath is the host path of the registry's configuration file.
	ConfigPath string
	// Config is the configuration the registry runs, after remapping.
	Config string
	// ContainerPort is the port http.addr names in the rendered configuration.
	ContainerPort int
	// Remapped maps configuration keys (and "env NAME") to the container paths or addresses they had, for reports
	// and checks.
	Remapped map[string]string
	// HostPath maps configuration keys (and "env NAME") to the host paths their container paths moved to.
	HostPath map[string]string
	// Listen maps the loopback addresses the native sidecars listen on in the pod to the addresses they listen
	// on here. A new pod of the same Pod keeps them.
	Listen map[string]string
}

// Command is a process of the pod, ready to start: Bin with exactly Args and Env, nothing inherited.
type Command struct {
	// Name is the container's name.
	Name string
	Bin  string
	Args []string
	Env  []string
}

// New reads the registry Deployment of res.
func New(res *chartrender.Result, opts Options) (*Pod, error) {
	spec, err := podSpec(res)
	if err != nil {
		return nil, err
	}
	return &Pod{opts: opts, res: res, spec: spec, Port: opts.Port, Volumes: map[string]string{},
		Remapped: map[string]string{}, HostPath: map[string]string{}, Listen: map[string]string{}}, nil
}

// Dir is the directory the pod runs in.
func (p *Pod) Dir() string { return p.opts.Dir }

// DataDir is the host directory of the registry's cache volume.
func (p *Pod) DataDir() string { return p.Volumes["data"] }

// Start makes a new pod of the Deployment, up to its registry container: it creates the volumes (emptyDirs are
// new on every call, the claim's directory is kept), runs the init containers in order and returns the registry
// container's command. startSidecar receives each native sidecar in its turn among the init containers; it may
// start it there, or later, before the registry. Stopping a previous pod's processes is the caller's.
func (p *Pod) Start(startSidecar func(Command) error) (Command, error) {
	if err := p.prepareVolumes(); err != nil {
		return Command{}, err
	}
	for _, c := range sliceOf(p.spec["initContainers"]) {
		cm, _ := c.(map[string]any)
		if err := p.runInitContainer(cm, startSidecar); err != nil {
			return Command{}, err
		}
	}
	return p.registryCommand()
}

// Container returns the pod's container (list "containers") or init container (list "initContainers") name.
func (p *Pod) Container(list, name string) (map[string]any, error) {
	return findContainer(p.spec, list, name)
}

// runInitContainer runs an init container with the connected-registry binary, stands in for the tls-reloader, or hands a
// native sidecar to startSidecar.
func (p *Pod) runInitContainer(c map[string]any, startSidecar func(Command) error) error {
	cmd, err := p.productCommand(c)
	if err != nil {
		return err
	}
	if c["restartPolicy"] != "Always" {
		return p.runToCompletion(cmd)
	}
	if len(cmd.Args) > 0 && cmd.Args[0] == "tls-reloader" {
		return p.standInForTLSReloader(cmd.Name, cmd.Args)
	}
	if err := p.listenHere(cmd.Args); err != nil {
		return fmt.Errorf("sidecar %s: %w", cmd.Name, err)
	}
	return startSidecar(cmd)
}

// productCommand returns an init container's command with the connected-registry binary, which must be what it
// runs: the product image with its entrypoint.
func (p *Pod) productCommand(c map[string]any) (Command, error) {
	name, _ := c["name"].(string)
	if image, _ := c["image"].(string); !isProductImage(image) {
		return Command{}, fmt.Errorf("init container %s runs image %q, not the connected-registry image podemu can emulate", name, image)
	}
	if len(sliceOf(c["command"])) > 0 {
		return Command{}, fmt.Errorf("init container %s overrides the connected-registry image's entrypoint: %v", name, c["command"])
	}
	mounts, err := p.mounts(c)
	if err != nil {
		return Command{}, err
	}
	env, err := p.env(c, mounts)
	if err != nil {
		return Command{}, err
	}
	args := remapArgs(mounts, stringSlice(c["args"]))
	env = append(append([]string{"PATH=" + os.Getenv("PATH")}, env...), p.opts.ProductEnv...)
	return Command{Name: name, Bin: p.opts.ProductBin, Args: args, Env: env}, nil
}

// runToCompletion runs an init container that is not a sidecar, as the kubelet does before the next.
func (p *Pod) runToCompletion(c Command) error {
	cmd := exec.Command(c.Bin, c.Args...)
	cmd.Env = c.Env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("init container %s (connected-registry %s) failed: %w\n%s", c.Name, strings.Join(c.Args, " "), err, out)
	}
	p.logf("init container %s: %s", c.Name, strings.TrimSpace(string(out)))
	return nil
}

// listenHere moves a sidecar's --listen addresses to free ports of 127.0.0.1, recording them in p.Listen; an
// address it had in an earlier pod keeps its port.
func (p *Pod) listenHere(args []string) error {
	for i, a := range args {
		addr, ok := strings.CutPrefix(a, "--listen=")
		if !ok {
			continue
		}
		if _, seen := p.Listen[addr]; !seen {
			port, err := FreePort()
			if err != nil {
				return err
			}
			p.Listen[addr] = loopback(port)
		}
		args[i] = "--listen=" + p.Listen[addr]
	}
	return nil
}

// standInForTLSReloader does what the tls-reloader sidecar does before the registry starts, which needs the API
// server podemu has not: it writes the --secret's tls.key and tls.crt, as they are, into --tls-dir. The reloader
// itself is tested by its unit tests and end to end.
func (p *Pod) standInForTLSReloader(name string, args []string) error {
	var secret, dir string
	for _, a := range args[1:] {
		if v, ok := strings.CutPrefix(a, "--secret="); ok {
			secret = v
		}
		if v, ok := strings.CutPrefix(a, "--tls-dir="); ok {
			dir = v
		}
	}
	if secret == "" || dir == "" || !filepath.IsAbs(dir) {
		return fmt.Errorf("sidecar %s runs tls-reloader without --secret or a --tls-dir on a volume: %q", name, args)
	}
	data, err := p.secret(secret)
	if err != nil {
		return fmt.Errorf("sidecar %s: %w", name, err)
	}
	if data["tls.crt"] == "" || data["tls.key"] == "" {
		return fmt.Errorf("the Secret %s, which sidecar %s serves, lacks tls.crt or tls.key", secret, name)
	}
	if err := writeFile(filepath.Join(dir, "tls.key"), data["tls.key"], 0o600); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "tls.crt"), data["tls.crt"], 0o644); err != nil {
		return err
	}
	p.logf("sidecar %s (tls-reloader, needs the API server) stood in for: wrote Secret %s's tls.crt and tls.key into %s", name, secret, dir)
	return nil
}

// registryCommand returns the registry container's command, with its configuration file remapped in place.
func (p *Pod) registryCommand() (Command, error) {
	c, err := p.Container("containers", RegistryContainer)
	if err != nil {
		return Command{}, err
	}
	mounts, err := p.mounts(c)
	if err != nil {
		return Command{}, err
	}
	if len(sliceOf(c["command"])) > 0 {
		return Command{}, fmt.Errorf("the registry container overrides the image's entrypoint (%v); podemu expects args only", c["command"])
	}
	args := stringSlice(c["args"])
	if len(args) != 2 || args[0] != "serve" {
		return Command{}, fmt.Errorf("the registry container's args are %q, want [serve <config>]", args)
	}
	config, ok := remap(mounts, args[1])
	if !ok {
		return Command{}, fmt.Errorf("the registry reads its configuration from %s, which is on no volume of the registry container", args[1])
	}
	p.ConfigPath = config
	if p.Config, err = p.remapConfig(mounts, config); err != nil {
		return Command{}, err
	}
	env, err := p.env(c, mounts)
	if err != nil {
		return Command{}, err
	}
	return Command{
		Name: RegistryContainer,
		Bin:  p.opts.RegistryBin,
		Args: []string{"serve", config},
		Env:  append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(p.opts.Dir, "home")}, env...),
	}, nil
}

// PortNamed returns the registry container's port named name.
func (p *Pod) PortNamed(name string) (int, error) {
	c, err := p.Container("containers", RegistryContainer)
	if err != nil {
		return 0, err
	}
	for _, port := range sliceOf(c["ports"]) {
		pm, _ := port.(map[string]any)
		if pm["name"] == name {
			n, _ := strconv.Atoi(fmt.Sprint(pm["containerPort"]))
			return n, nil
		}
	}
	return 0, fmt.Errorf("the registry container has no port named %q", name)
}

// ReadinessURL returns the URL of the registry container's readiness probe, on the port http.addr moved to. The
// probe must check the port http.addr names, over HTTPS.
func (p *Pod) ReadinessURL() (string, error) {
	c, err := p.Container("containers", RegistryContainer)
	if err != nil {
		return "", err
	}
	get, err := mapAt(c, "readinessProbe", "httpGet")
	if err != nil {
		return "", fmt.Errorf("the registry's readiness probe: %w", err)
	}
	if scheme, _ := get["scheme"].(string); scheme != "HTTPS" {
		return "", fmt.Errorf("the registry's readiness probe uses scheme %q, want HTTPS", scheme)
	}
	port := fmt.Sprint(get["port"])
	if n, err := strconv.Atoi(port); err == nil {
		if n != p.ContainerPort {
			return "", fmt.Errorf("the readiness probe checks port %d, but the registry listens on %d", n, p.ContainerPort)
		}
	} else {
		n, err := p.PortNamed(port)
		if err != nil {
			return "", fmt.Errorf("the readiness probe's port: %w", err)
		}
		if n != p.ContainerPort {
			return "", fmt.Errorf("the readiness probe's port %s is %d, but the registry listens on %d", port, n, p.ContainerPort)
		}
	}
	path, _ := get["path"].(string)
	return fmt.Sprintf("https://%s%s", loopback(p.Port), path), nil
}

// RemappedKeys lists what Start remapped, "key container-value", sorted and comma-separated, for a report.
func (p *Pod) RemappedKeys() string {
	keys := make([]string, 0, len(p.Remapped))
	for k, v := range p.Remapped {
		keys = append(keys, k+" "+v)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func (p *Pod) logf(format string, args ...any) {
	if p.opts.Logf != nil {
		p.opts.Logf(format, args...)
	}
}

// isProductImage tells whether image (repository:tag or repository@digest) is the product image, whose
// repository ends in connected-registry (ghcr.io/connected-registry/connected-registry, or a mirror of it).
func isProductImage(image string) bool {
	repo, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return path.Base(repo) == "connected-registry"
}
