// Package cluster runs a real single-node Kubernetes v1.37.2 on this machine:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
// kube-proxy from one multi-call binary (./cmd/kube), with Debian's containerd,
// runc and CNI plugins running real containers.
//
// Every process runs in the background with its PID file and log under the
// state directory, and Down stops them by PID. Pods live on the bridge cni0
// and cannot leave the machine: they have no default route, and the FORWARD
// chain drops whatever enters from cni0 towards any other interface.
package cluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Defaults of Options; each has an environment twin named in Options.
const (
	DefaultStateDir         = "/var/lib/cr-cluster"
	DefaultNodeName         = "cr-node"
	DefaultBridge           = "cni0"
	DefaultBridgeCIDR       = "10.244.0.1/24"
	DefaultServiceCIDR      = "10.96.0.0/16"
	DefaultContainerdSocket = "/run/containerd/containerd.sock"
	DefaultCertsDir         = "/etc/containerd/certs.d"
	DefaultPauseImage       = "localhost/cr-cluster/pause:v1"
	DefaultTimeout          = 5 * time.Minute

	// KubernetesVersion is the version the components are built from and stamped with.
	KubernetesVersion = "v1.37.2"
	// APIServerPort is the API server's secure port, on every address.
	APIServerPort = 6443
	// ModulePath is this module's path; Source must hold it.
	ModulePath = "github.com/connected-registry/connected-registry/tests/cluster"
)

// Options configure the cluster. The zero value is completed with the defaults.
type Options struct {
	// StateDir holds the binaries, PKI, configs, data, PIDs and logs.
	// Env CLUSTER_STATE_DIR, default /var/lib/cr-cluster.
	StateDir string
	// Source is the directory of this Go module, used to build ./cmd/kube and
	// ./cmd/pause. Env CLUSTER_SOURCE, default the module holding the working directory.
	Source string
	// KubeBin is a prebuilt multi-call binary; when empty, Up builds one into
	// StateDir/bin/kube from Source. Env CLUSTER_KUBE_BIN.
	KubeBin string
	// NodeName is the name the node registers as. Env CLUSTER_NODE_NAME, default cr-node.
	NodeName string
	// Bridge is the Linux bridge the pods attach to. Env CLUSTER_BRIDGE, default cni0.
	Bridge string
	// BridgeCIDR is the bridge's address and the pod subnet; the API server
	// advertises this address and the node's InternalIP is this address.
	// Env CLUSTER_BRIDGE_CIDR, default 10.244.0.1/24.
	BridgeCIDR string
	// ServiceCIDR is the Service ClusterIP range, routed onto the bridge.
	// Env CLUSTER_SERVICE_CIDR, default 10.96.0.0/16.
	ServiceCIDR string
	// ContainerdSocket is the containerd gRPC socket. Env CLUSTER_CONTAINERD_SOCKET,
	// default /run/containerd/containerd.sock (the real path, so ctr needs no --address).
	ContainerdSocket string
	// CertsDir is containerd's registry config_path. Env CLUSTER_CERTS_DIR,
	// default /etc/containerd/certs.d (the real path, so a node agent runs unchanged).
	CertsDir string
	// PauseImage is the sandbox image built here and imported into containerd.
	// Env CLUSTER_PAUSE_IMAGE, default localhost/cr-cluster/pause:v1.
	PauseImage string
	// Timeout bounds Up's wait for the node to be Ready (and each single wait).
	// Env CLUSTER_TIMEOUT, default 5m0s.
	Timeout time.Duration
	// KeepData keeps the etcd data (every object) and the kubelet's pods of
	// the previous run; by default Up starts from an empty cluster. The PKI,
	// binaries and imported images are kept either way. Env CLUSTER_KEEP_DATA=true.
	KeepData bool
	// SkipInstall skips the apt-get install of containerd, runc, CNI plugins and iptables.
	// Env CLUSTER_SKIP_INSTALL=true.
	SkipInstall bool
	// Out receives progress lines; nil means os.Stderr.
	Out io.Writer

	bridgeIP    net.IP
	bridgeNet   *net.IPNet
	serviceNet  *net.IPNet
	firstSvcIP  net.IP
	lastLogTail int
}

// OptionsFromEnv returns Options filled from the environment twins of the flags.
func OptionsFromEnv() (Options, error) {
	o := Options{
		StateDir:         os.Getenv("CLUSTER_STATE_DIR"),
		Source:           os.Getenv("CLUSTER_SOURCE"),
		KubeBin:          os.Getenv("CLUSTER_KUBE_BIN"),
		NodeName:         os.Getenv("CLUSTER_NODE_NAME"),
		Bridge:           os.Getenv("CLUSTER_BRIDGE"),
		BridgeCIDR:       os.Getenv("CLUSTER_BRIDGE_CIDR"),
		ServiceCIDR:      os.Getenv("CLUSTER_SERVICE_CIDR"),
		ContainerdSocket: os.Getenv("CLUSTER_CONTAINERD_SOCKET"),
		CertsDir:         os.Getenv("CLUSTER_CERTS_DIR"),
		PauseImage:       os.Getenv("CLUSTER_PAUSE_IMAGE"),
		SkipInstall:      os.Getenv("CLUSTER_SKIP_INSTALL") == "true",
		KeepData:         os.Getenv("CLUSTER_KEEP_DATA") == "true",
	}
	if v := os.Getenv("CLUSTER_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return o, fmt.Errorf("CLUSTER_TIMEOUT %q: %w", v, err)
		}
		o.Timeout = d
	}
	return o, nil
}

// Complete fills the defaults and validates the options.
func (o *Options) Complete() error {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&o.StateDir, DefaultStateDir)
	def(&o.NodeName, DefaultNodeName)
	def(&o.Bridge, DefaultBridge)
	def(&o.BridgeCIDR, DefaultBridgeCIDR)
	def(&o.ServiceCIDR, DefaultServiceCIDR)
	def(&o.ContainerdSocket, DefaultContainerdSocket)
	def(&o.CertsDir, DefaultCertsDir)
	def(&o.PauseImage, DefaultPauseImage)
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Out == nil {
		o.Out = os.Stderr
	}
	if o.lastLogTail == 0 {
		o.lastLogTail = 25
	}
	abs, err := filepath.Abs(o.StateDir)
	if err != nil {
		return fmt.Errorf("state dir %q: %w", o.StateDir, err)
	}
	o.StateDir = abs
	ip, ipnet, err := net.ParseCIDR(o.BridgeCIDR)
	if err != nil || ip.To4() == nil || ip.Equal(ipnet.IP) {
		return fmt.Errorf("bridge CIDR %q: want an IPv4 host address with its prefix, like %s", o.BridgeCIDR, DefaultBridgeCIDR)
	}
	o.bridgeIP, o.bridgeNet = ip.To4(), ipnet
	_, svc, err := net.ParseCIDR(o.ServiceCIDR)
	if err != nil || svc.IP.To4() == nil {
		return fmt.Errorf("service CIDR %q: want an IPv4 network like %s", o.ServiceCIDR, DefaultServiceCIDR)
	}
	o.serviceNet = svc
	o.firstSvcIP = nextIP(svc.IP.To4())
	if o.Source != "" {
		if o.Source, err = filepath.Abs(o.Source); err != nil {
			return fmt.Errorf("source %q: %w", o.Source, err)
		}
	}
	return nil
}

// ErrNoSource is returned when the module source is needed but not found.
var ErrNoSource = errors.New("the tests/cluster module source is needed to build the binaries: run from tests/cluster, or set --source (CLUSTER_SOURCE)")

// findSource returns the directory of the module holding the working
// directory when it is this module.
func findSource() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("%w: go env GOMOD: %v", ErrNoSource, err)
	}
	gomod := strings.TrimSpace(string(out))
	data, err := os.ReadFile(gomod)
	if gomod == "" || gomod == os.DevNull || err != nil {
		return "", ErrNoSource
	}
	if !strings.Contains(string(data), "module "+ModulePath+"\n") {
		return "", fmt.Errorf("%w (the working directory is in %s)", ErrNoSource, gomod)
	}
	return filepath.Dir(gomod), nil
}

func nextIP(ip net.IP) net.IP {
	n := make(net.IP, len(ip))
	copy(n, ip)
	for i := len(n) - 1; i >= 0; i-- {
		n[i]++
		if n[i] != 0 {
			break
		}
	}
	return n
}

// Paths under the state directory.
func (o *Options) path(elem ...string) string {
	return filepath.Join(append([]string{o.StateDir}, elem...)...)
}

// Kubeconfig is the admin kubeconfig for host tools (server https://127.0.0.1:6443).
func (o *Options) Kubeconfig() string { return o.path("pki", "admin.kubeconfig") }

// CACert is the cluster CA certificate (PEM).
func (o *Options) CACert() string { return o.path("pki", "ca.crt") }

// BinDir holds kube, kubectl (a symlink to kube) and pause.
func (o *Options) BinDir() string { return o.path("bin") }

// BridgeIP is the bridge address: the API server's advertised address and the node's InternalIP.
func (o *Options) BridgeIP() net.IP { return o.bridgeIP }

func (o *Options) kube() string {
	if o.KubeBin != "" {
		return o.KubeBin
	}
	return o.path("bin", "kube")
}

func (o *Options) logf(format string, args ...any) {
	fmt.Fprintf(o.Out, "cluster: "+format+"\n", args...)
}
