package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// debPackages are the Debian packages the node needs, each with a file it installs.
var debPackages = []struct{ name, file string }{
	{"containerd", "/usr/bin/containerd"},
	{"runc", "/usr/sbin/runc"},
	{"containernetworking-plugins", CNIBinDir + "/bridge"},
	{"iptables", "/usr/sbin/iptables"},
}

// ErrNotRoot is returned when Up or Down run without root.
var ErrNotRoot = errors.New("the test cluster needs root (network, mounts, containerd)")

// Up brings the single-node cluster up: it cleans what an earlier run left,
// installs the Debian packages when missing, builds the binaries, writes the
// PKI and configs, sets up the bridge and the containment rules, starts every
// component and waits for the node to be Ready and the kubernetes Service to
// answer through its ClusterIP. When the cluster is already up and healthy it
// returns at once. On failure it prints the tail of every component's log.
func (o *Options) Up(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	unlock, err := o.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return o.up(ctx)
}

func (o *Options) up(ctx context.Context) (err error) {
	began := time.Now()
	if o.healthy(ctx) == nil {
		o.logf("already up (state %s)", o.StateDir)
		if o.ContainmentInPlace(ctx) != nil {
			return o.ensureContainment(ctx)
		}
		return nil
	}
	defer func() {
		if err != nil {
			o.dumpLogs()
		}
	}()
	if o.hasLeftovers() {
		o.logf("cleaning the leftovers of an earlier run")
		if err := o.down(ctx); err != nil {
			return fmt.Errorf("clean leftovers: %w", err)
		}
	}
	if err := o.installPackages(ctx); err != nil {
		return err
	}
	if err := o.build(ctx); err != nil {
		return err
	}
	began = time.Now() // the build is reported apart
	if !o.KeepData {
		if err := o.wipeData(); err != nil {
			return err
		}
	}
	if err := o.ensurePKI(time.Now()); err != nil {
		return err
	}
	if err := o.writeConfigs(); err != nil {
		return err
	}
	if err := o.ensureBridge(ctx); err != nil {
		return err
	}
	if err := o.ensureContainment(ctx); err != nil {
		return err
	}
	if err := o.checkFreeSocket(); err != nil {
		return err
	}
	// This run's logs start empty; the previous run's stay in logs.prev.
	_ = os.RemoveAll(o.path("logs.prev"))
	_ = os.Rename(o.path("logs"), o.path("logs.prev"))
	comps := map[string]component{}
	for _, c := range o.components() {
		comps[c.name] = c
	}
	// containerd and etcd first; the pause image is imported meanwhile.
	for _, name := range []string{"containerd", "etcd"} {
		if err := o.start(comps[name]); err != nil {
			return err
		}
	}
	if err := poll("containerd socket", o.Timeout, o.containerdReady(ctx)); err != nil {
		return err
	}
	if err := o.ensurePauseImage(ctx); err != nil {
		return err
	}
	if err := poll("etcd health", o.Timeout, httpOK(ctx, http.DefaultClient, "http://127.0.0.1:2379/health")); err != nil {
		return err
	}
	if err := o.start(comps["kube-apiserver"]); err != nil {
		return err
	}
	client, httpc, err := o.clients()
	if err != nil {
		return err
	}
	if err := poll("kube-apiserver /readyz", o.Timeout, o.whileRunning("kube-apiserver", httpOK(ctx, httpc, fmt.Sprintf("https://127.0.0.1:%d/readyz", APIServerPort)))); err != nil {
		return err
	}
	o.logf("kube-apiserver ready after %s", time.Since(began).Round(100*time.Millisecond))
	kubeletStart := time.Now().Truncate(time.Second)
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		if err := o.start(comps[name]); err != nil {
			return err
		}
	}
	if err := poll("node "+o.NodeName+" Ready", o.Timeout, o.whileRunning("kubelet", o.nodeReady(ctx, client, kubeletStart))); err != nil {
		return err
	}
	svcURL := fmt.Sprintf("https://%s:443/readyz", o.firstSvcIP)
	if err := poll("kubernetes Service at "+svcURL, o.Timeout, o.whileRunning("kube-proxy", httpOK(ctx, httpc, svcURL))); err != nil {
		return err
	}
	// kube-proxy inserted its FORWARD jumps first: put the containment rule back on top.
	if err := o.ensureContainment(ctx); err != nil {
		return err
	}
	if err := poll("default ServiceAccount", o.Timeout, func() error {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := o.healthy(ctx); err != nil {
		return err
	}
	o.logf("up in %s: export KUBECONFIG=%s", time.Since(began).Round(100*time.Millisecond), o.Kubeconfig())
	return nil
}

// installPackages installs the Debian packages that are missing.
func (o *Options) installPackages(ctx context.Context) error {
	var missing []string
	for _, p := range debPackages {
		if _, err := os.Stat(p.file); err != nil {
			missing = append(missing, p.name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if o.SkipInstall {
		return fmt.Errorf("packages %s are missing and installing is skipped", strings.Join(missing, ", "))
	}
	o.logf("apt-get install %s", strings.Join(missing, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"update", "-q"},
		append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...),
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, o.Out, o.Out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
	}
	return nil
}

// checkFreeSocket fails when a containerd that is not ours serves the socket.
func (o *Options) checkFreeSocket() error {
	if _, ok := o.running("containerd"); ok {
		return nil
	}
	if conn, err := net.DialTimeout("unix", o.ContainerdSocket, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("another containerd serves %s: stop it, or set --containerd-socket", o.ContainerdSocket)
	}
	_ = os.Remove(o.ContainerdSocket)
	return nil
}

func (o *Options) containerdReady(ctx context.Context) func() error {
	return o.whileRunning("containerd", func() error {
		_, err := run(ctx, "ctr", "--address", o.ContainerdSocket, "version")
		return err
	})
}

// whileRunning wraps check so that polling stops early with the reason when
// the component has exited.
func (o *Options) whileRunning(name string, check func() error) func() error {
	return func() error {
		if _, ok := o.running(name); !ok {
			return backoffStop{fmt.Errorf("%s exited: see %s", name, o.LogFile(name))}
		}
		return check()
	}
}

type backoffStop struct{ error }

func httpOK(ctx context.Context, c *http.Client, url string) func() error {
	return func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// clients returns a clientset and an HTTP client authenticated as admin.
func (o *Options) clients() (kubernetes.Interface, *http.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig())
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", o.Kubeconfig(), err)
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.LoadX509KeyPair(o.path("pki", "admin.crt"), o.path("pki", "admin.key"))
	if err != nil {
		return nil, nil, err
	}
	caPEM, err := os.ReadFile(o.CACert())
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}}
	return cs, httpc, nil
}

// nodeReady checks that the node is Ready, as last reported at or after since
// (a Ready status from before the kubelet started is stale).
func (o *Options) nodeReady(ctx context.Context, c kubernetes.Interface, since time.Time) func() error {
	return func() error {
		n, err := c.CoreV1().Nodes().Get(ctx, o.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.LastHeartbeatTime.Before(&metav1.Time{Time: since}) {
					return fmt.Errorf("node %s has not reported since %s", o.NodeName, since.Format(time.RFC3339))
				}
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s Ready=%s: %s", o.NodeName, cond.Status, cond.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", o.NodeName)
	}
}
