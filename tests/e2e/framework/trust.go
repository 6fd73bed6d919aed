package framework

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ContainerdConfig is the test node's containerd configuration (tests/cluster writes it, schema 2, config_path set
// to CertsDir); the chart's agent reads it through trustDistribution.containerdConfig.
const ContainerdConfig = "/var/lib/cr-cluster/etc/containerd.toml"

// NodeEntry is the directory the trust agent owns on the node for the registry.
var NodeEntry = filepath.Join(CertsDir, RegistryHost)

// ContainerdPID returns the pid of the node's containerd, to prove it was never restarted.
func ContainerdPID() (int, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) == "containerd" && strings.Contains(string(cmdline), "--config") {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no containerd process found")
}

// WaitNodeCA waits until the node's entry ca.crt holds caPEM, and returns how long that took.
func (e *Env) WaitNodeCA(ctx context.Context, caPEM []byte, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	progress := e.Progress("the node's " + NodeEntry + "/ca.crt")
	for {
		got, err := os.ReadFile(filepath.Join(NodeEntry, "ca.crt"))
		if err == nil && strings.Contains(string(got), string(caPEM)) {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("%s/ca.crt does not hold the CA after %s (read error: %v)", NodeEntry, timeout, err)
		}
		progress.Say(fmt.Sprintf("%d bytes, %v", len(got), err))
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// PullFails runs the hello pod from the connected registry and waits until its pull fails; it returns the
// kubelet's message.
func (e *Env) PullFails(ctx context.Context, ns string) (string, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello-untrusted", Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "hello", Image: RegistryHost + "/" + HelloImage, ImagePullPolicy: corev1.PullAlways}},
		},
	}
	if _, err := e.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	defer e.deletePod(ns, pod.Name)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		got, err := e.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil {
			if got.Status.Phase == corev1.PodSucceeded || got.Status.Phase == corev1.PodRunning {
				return "", fmt.Errorf("the pull succeeded: %s", podState(got))
			}
			for _, cs := range got.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && w.Message != "" {
					return w.Message, nil
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	return "", fmt.Errorf("the pull neither failed nor succeeded in a minute")
}

// ClusterLeftovers lists the cluster-scoped RBAC objects of the release that are still there.
func (e *Env) ClusterLeftovers(ctx context.Context, release string) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=connected-registry,app.kubernetes.io/instance=" + release}
	var out []string
	roles, err := e.Client.RbacV1().ClusterRoles().List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for _, r := range roles.Items {
		out = append(out, "ClusterRole/"+r.Name)
	}
	bindings, err := e.Client.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for _, b := range bindings.Items {
		out = append(out, "ClusterRoleBinding/"+b.Name)
	}
	return out, nil
}

// Timeline records when each of its conditions first held, polling them every 100 ms from StartTimeline on, so
// a test can measure the time between two events it does not cause itself.
type Timeline struct {
	start time.Time
	mu    sync.Mutex
	at    map[string]time.Duration
	done  chan struct{}
}

// StartTimeline polls conds until each held once or ctx ends.
func StartTimeline(ctx context.Context, conds map[string]func() bool) *Timeline {
	tl := &Timeline{start: time.Now(), at: map[string]time.Duration{}, done: make(chan struct{})}
	go func() {
		defer close(tl.done)
		for {
			tl.mu.Lock()
			for name, cond := range conds {
				if _, ok := tl.at[name]; !ok && cond() {
					tl.at[name] = time.Since(tl.start)
				}
			}
			all := len(tl.at) == len(conds)
			tl.mu.Unlock()
			if all {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return tl
}

// Wait waits until the condition name held, and returns when that was, from the timeline's start.
func (tl *Timeline) Wait(name string, timeout time.Duration) (time.Duration, error) {
	deadline := time.After(timeout)
	for {
		tl.mu.Lock()
		at, ok := tl.at[name]
		tl.mu.Unlock()
		if ok {
			return at, nil
		}
		select {
		case <-deadline:
			return 0, fmt.Errorf("%s did not happen within %s", name, timeout)
		case <-tl.done:
			tl.mu.Lock()
			at, ok := tl.at[name]
			tl.mu.Unlock()
			if ok {
				return at, nil
			}
			return 0, fmt.Errorf("%s did not happen before the timeline ended", name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// NodeHasCA tells whether the node's entry holds caPEM.
func NodeHasCA(caPEM []byte) bool {
	got, err := os.ReadFile(filepath.Join(NodeEntry, "ca.crt"))
	return err == nil && strings.Contains(string(got), string(caPEM))
}

// Serves tells whether the registry serves the certificate with the given serial.
func Serves(serial *big.Int) bool {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", RegistryHost, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the serial only
	if err != nil {
		return false
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(serial) == 0
}

// PullImage pulls the hello image through the connected registry with a client of its own (not the node's
// containerd, whose content store may already hold the layers): the index, the image of this machine's platform,
// its config and every layer, each verified against its digest. It returns the bytes read.
func (e *Env) PullImage(ctx context.Context) (int64, error) {
	ref, err := name.ParseReference(RegistryHost + "/" + HelloImage)
	if err != nil {
		return 0, err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithTransport(e.CA.Transport()),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	if err != nil {
		return 0, fmt.Errorf("pulling %s: %w", ref, err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return 0, err
	}
	n := int64(len(cfg))
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return n, err
		}
		m, err := io.Copy(io.Discard, rc)
		rc.Close()
		n += m
		if err != nil {
			return n, fmt.Errorf("reading a layer of %s: %w", ref, err)
		}
	}
	return n, nil
}

// Kubectl is the test cluster's kubectl (tests/cluster links it to its multi-call binary).
const Kubectl = "/var/lib/cr-cluster/bin/kubectl"
