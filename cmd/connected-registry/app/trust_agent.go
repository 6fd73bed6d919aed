package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/connected-registry/connected-registry/internal/trust"
)

// NodeTrustOptions say which certs.d entry is ours; the agent and its removal share them.
type NodeTrustOptions struct {
	// CertsDir is the node's certs.d directory as mounted into this container.
	CertsDir string
	// HostCertsDir is the same directory as a path on the node.
	HostCertsDir string
	// Host is the registry address the entry is for, clusterIP:443.
	Host string
	// Owner is namespace/release.
	Owner string
	// NodeName is this pod's node, for reports.
	NodeName string
}

func (n *NodeTrustOptions) addFlags(fs *FlagSet) {
	const p = "CONNECTED_REGISTRY_TRUST_"
	fs.StringVar(&n.CertsDir, "certs-dir", p+"CERTS_DIR", "/host/certs.d", "the node's containerd certs.d directory as mounted into this container")
	fs.StringVar(&n.HostCertsDir, "host-certs-dir", p+"HOST_CERTS_DIR", "/etc/containerd/certs.d",
		"the same directory as a path on the node: what containerd's config_path must name")
	fs.StringVar(&n.Host, "host", p+"HOST", "", "the registry's address as nodes pull from it, service.clusterIP:443 (required)")
	fs.StringVar(&n.Owner, "owner", p+"OWNER", "", "the release owning the entry, namespace/release (required)")
	fs.StringVar(&n.NodeName, "node-name", "NODE_NAME", "", "this node's name, for reports")
}

func (n *NodeTrustOptions) complete() error {
	if n.Host == "" {
		return usageErrorf("--host is required: the registry's clusterIP:443")
	}
	if _, port, err := net.SplitHostPort(n.Host); err != nil || port == "" {
		return usageErrorf("--host %q is not host:port", n.Host)
	}
	if n.Owner == "" || strings.Count(n.Owner, "/") != 1 {
		return usageErrorf("--owner %q is not namespace/release", n.Owner)
	}
	if n.CertsDir == "" || n.HostCertsDir == "" {
		return usageErrorf("--certs-dir and --host-certs-dir must not be empty")
	}
	return nil
}

func (n *NodeTrustOptions) entry(grace time.Duration, clock Clock) *trust.Entry {
	return &trust.Entry{Dir: n.CertsDir, HostDir: n.HostCertsDir, Host: n.Host, Owner: n.Owner,
		PreviousCAGrace: grace, Now: clock.Now}
}

// TrustAgentOptions runs the node agent of trust distribution: it keeps certs.d/<host>/{ca.crt,hosts.toml} equal
// to the mounted CA, reports whether containerd will use them, and never restarts containerd.
type TrustAgentOptions struct {
	NodeTrustOptions
	// CAConfigMap is the trust bundle ConfigMap the registry pod publishes the CA to; the agent reads it through
	// the API, so a new CA reaches the node in seconds, and acknowledges each bundle it installed there.
	CAConfigMap string
	// CAFile is the CA as a file, instead of CAConfigMap.
	CAFile string
	// ContainerdConfig and RegistriesYAML are read to tell whether containerd will use the entry.
	ContainerdConfig     string
	HostContainerdConfig string
	RegistriesYAML       string
	// Interval between two looks at the mounted CA and containerd's configuration.
	Interval time.Duration
	// PreviousCAGrace keeps a replaced CA trusted this long.
	PreviousCAGrace time.Duration
	// HealthAddr serves /readyz (trust in place and used by containerd) and /healthz.
	HealthAddr string
	// Namespace receives the Events, about this pod; empty sends none.
	Namespace string
	// PodName and PodUID name this pod, which the Events are about.
	PodName string
	PodUID  string
	// Events receives the agent's reports; nil builds one on the API when Namespace is set.
	Events EventSink
	// Clock defaults to the real time.
	Clock Clock
	// LogOut receives the logs.
	LogOut io.Writer
	// LogLevel as in KubeOptions.
	LogLevel string
	// Kubeconfig as in KubeOptions; empty in a pod.
	Kubeconfig string

	log  *slog.Logger
	kube *KubeOptions
	// acked is the fingerprint of the bundle last acknowledged on the ConfigMap.
	acked string
	// ready is the last state: trust in place and containerd uses it.
	mu     sync.Mutex
	ready  bool
	reason string
}

// EventSink records an Event about this node; the agent's way of reporting besides its readiness.
type EventSink interface {
	Event(ctx context.Context, warning bool, reason, message string)
}

// AddFlags registers the flags.
func (o *TrustAgentOptions) AddFlags(fs *FlagSet) {
	o.NodeTrustOptions.addFlags(fs)
	const p = "CONNECTED_REGISTRY_TRUST_"
	fs.StringVar(&o.CAConfigMap, "ca-configmap", p+"CA_CONFIGMAP", "", "the trust bundle ConfigMap (key ca.crt) in --namespace")
	fs.StringVar(&o.CAFile, "ca-file", p+"CA_FILE", "", "the registry's CA bundle as a file, instead of --ca-configmap")
	fs.StringVar(&o.ContainerdConfig, "containerd-config", p+"CONTAINERD_CONFIG", "",
		"containerd's config.toml as mounted into this container; empty when not mounted")
	fs.StringVar(&o.HostContainerdConfig, "host-containerd-config", p+"HOST_CONTAINERD_CONFIG", "/etc/containerd/config.toml",
		"the same file as a path on the node, for reports")
	fs.StringVar(&o.RegistriesYAML, "registries-yaml", p+"REGISTRIES_YAML", "",
		"k3s/rke2 registries.yaml as mounted into this container; empty when not mounted")
	fs.DurationVar(&o.Interval, "interval", p+"INTERVAL", 2*time.Second, "how often to compare the node's entry with the mounted CA")
	fs.DurationVar(&o.PreviousCAGrace, "previous-ca-grace", p+"PREVIOUS_CA_GRACE", 24*time.Hour,
		"how long a replaced CA stays trusted, so certificates it signed keep working while the registry switches")
	fs.StringVar(&o.HealthAddr, "health-addr", p+"HEALTH_ADDR", ":8081", "address of /readyz and /healthz; empty serves none")
	fs.StringVar(&o.Namespace, "namespace", "CONNECTED_REGISTRY_NAMESPACE", "", "namespace receiving the agent's Events; empty sends none")
	fs.StringVar(&o.PodName, "pod-name", "POD_NAME", "", "this pod's name: the Events are about it")
	fs.StringVar(&o.PodUID, "pod-uid", "POD_UID", "", "this pod's UID")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "KUBECONFIG", "", "kubeconfig file for the Events; empty uses the pod's service account")
	fs.StringVar(&o.LogLevel, "log-level", "CONNECTED_REGISTRY_LOG_LEVEL", "info", "log level on standard error: error, warn, info or debug")
}

// Complete checks the flags and builds the logger and the event sink.
func (o *TrustAgentOptions) Complete() error {
	if err := o.NodeTrustOptions.complete(); err != nil {
		return err
	}
	if o.Interval <= 0 {
		return usageErrorf("--interval %s must be positive", o.Interval)
	}
	if (o.CAConfigMap == "") == (o.CAFile == "") {
		return usageErrorf("give exactly one of --ca-configmap and --ca-file")
	}
	if o.CAConfigMap != "" && o.Namespace == "" {
		return usageErrorf("--ca-configmap needs --namespace")
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	k := KubeOptions{Namespace: o.Namespace, Kubeconfig: o.Kubeconfig, LogLevel: o.LogLevel, LogOut: o.LogOut, Timeout: 10 * time.Second, Clock: o.Clock}
	if err := k.completeLogger(); err != nil {
		return err
	}
	o.log = k.log
	o.kube = &k
	if o.Namespace != "" && (o.Events == nil || o.CAConfigMap != "") {
		if err := k.completeClient("trust-agent"); err != nil {
			return err
		}
	}
	if o.Events == nil && o.Namespace != "" {
		if o.PodName == "" {
			return usageErrorf("--pod-name (POD_NAME) is required with --namespace: the agent's Events are about its pod")
		}
		o.Events = &podEvents{kube: &k, node: o.NodeName, pod: o.PodName, uid: o.PodUID, log: k.log}
	}
	return nil
}

// Run keeps the entry in place until ctx ends. It leaves the entry on the node when it stops: a restarted or
// upgraded agent must not take trust away; the chart's post-delete cleanup removes it.
func (o *TrustAgentOptions) Run(ctx context.Context, out io.Writer) error {
	if o.HealthAddr != "" {
		srv := &http.Server{Addr: o.HealthAddr, Handler: o.healthHandler(), ReadHeaderTimeout: 5 * time.Second}
		ln, err := net.Listen("tcp", o.HealthAddr)
		if err != nil {
			return fmt.Errorf("--health-addr %s: %w", o.HealthAddr, err)
		}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	fmt.Fprintf(out, "trust-agent: keeping %s/%s equal to %s on node %s\n", o.HostCertsDir, o.Host, o.source(), o.NodeName)
	entry := o.entry(o.PreviousCAGrace, o.Clock)
	var last string
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		state := o.Sync(ctx, entry)
		if state != last {
			fmt.Fprintln(out, "trust-agent: "+state)
			last = state
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync makes one pass: read the CA, install it when the node's entry differs, detect containerd's use of it,
// and report a change of state. It returns the state in one line.
func (o *TrustAgentOptions) Sync(ctx context.Context, entry *trust.Entry) string {
	ca, err := o.readCA(ctx)
	if err != nil {
		return o.setState(ctx, false, "CAUnavailable", fmt.Sprintf("reading the registry's CA from %s: %v", o.source(), err))
	}
	changed, err := entry.Install(ca)
	if err != nil {
		return o.setState(ctx, false, "TrustFailed", fmt.Sprintf("writing %s/%s: %v", o.HostCertsDir, o.Host, err))
	}
	d := trust.Detect(trust.DetectOptions{ContainerdConfig: o.ContainerdConfig, RegistriesYAML: o.RegistriesYAML,
		HostCertsDir: o.HostCertsDir, Host: o.Host})
	d.Reason = strings.ReplaceAll(d.Reason, o.ContainerdConfig+" ", o.HostContainerdConfig+" ")
	fp := trust.Fingerprint(ca)
	if len(changed) > 0 {
		o.log.Info("wrote the registry's trust", "files", changed, "ca", fp)
		if o.Events != nil {
			for i, f := range changed {
				changed[i] = strings.Replace(f, o.CertsDir, o.HostCertsDir, 1)
			}
			o.Events.Event(ctx, false, "TrustWritten", fmt.Sprintf("node %s: wrote %s (CA %s)", o.NodeName, strings.Join(changed, ", "), fp))
		}
	}
	if fp := BundleFingerprint(ca); o.CAConfigMap != "" && o.acked != fp {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := ackBundle(actx, o.kube, o.CAConfigMap, o.NodeName, fp); err != nil {
			o.log.Warn("acknowledging the bundle", "configmap", o.CAConfigMap, "err", err)
		} else {
			o.acked = fp
		}
		cancel()
	}
	if d.Verdict != trust.WillUse {
		return o.setState(ctx, false, "ContainerdIgnoresTrust", fmt.Sprintf("%s/%s holds CA %s, but containerd will not use it (%s): %s",
			o.HostCertsDir, o.Host, fp, d.Verdict, d.Reason))
	}
	return o.setState(ctx, true, "TrustInPlace", fmt.Sprintf("%s/%s holds CA %s and containerd uses it: %s", o.HostCertsDir, o.Host, fp, d.Reason))
}

func (o *TrustAgentOptions) source() string {
	if o.CAConfigMap != "" {
		return "ConfigMap " + o.Namespace + "/" + o.CAConfigMap
	}
	return o.CAFile
}

func (o *TrustAgentOptions) readCA(ctx context.Context) ([]byte, error) {
	if o.CAConfigMap == "" {
		return os.ReadFile(o.CAFile)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ca, acked, err := readBundle(ctx, o.kube, o.CAConfigMap, o.NodeName)
	// The ConfigMap says what is acknowledged: a recreated one is acknowledged again.
	o.acked = acked
	return ca, err
}

func (o *TrustAgentOptions) setState(ctx context.Context, ready bool, reason, msg string) string {
	line := fmt.Sprintf("%s: %s", reason, msg)
	o.mu.Lock()
	changed := o.ready != ready || o.reason != line
	o.ready, o.reason = ready, line
	o.mu.Unlock()
	if changed {
		if ready {
			o.log.Info(msg, "reason", reason)
		} else {
			o.log.Warn(msg, "reason", reason)
		}
		if o.Events != nil {
			o.Events.Event(ctx, !ready, reason, fmt.Sprintf("node %s: %s", o.NodeName, msg))
		}
	}
	return line
}

// Ready reports the last state.
func (o *TrustAgentOptions) Ready() (bool, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ready, o.reason
}

func (o *TrustAgentOptions) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, reason := o.Ready()
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, reason)
	})
	return mux
}

// podEvents records core/v1 Events about the agent's pod, naming its node, in the release namespace:
// `kubectl get events -n <namespace>` and `kubectl describe pod` show them. (An Event about the Node itself would
// have to live in the default namespace, outside the release's.)
type podEvents struct {
	kube *KubeOptions
	node string
	pod  string
	uid  string
	log  *slog.Logger
}

func (n *podEvents) Event(ctx context.Context, warning bool, reason, message string) {
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	now := metav1.NewTime(n.kube.Clock.Now())
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: "connected-registry-trust.", Namespace: n.kube.Namespace},
		InvolvedObject:      corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: n.kube.Namespace, Name: n.pod, UID: types.UID(n.uid)},
		Reason:              reason,
		Message:             truncate(message, 1024),
		Type:                typ,
		Source:              corev1.EventSource{Component: "connected-registry-trust-agent", Host: n.node},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "connected-registry.io/trust-agent",
		ReportingInstance:   n.node,
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := n.kube.Client.CoreV1().Events(n.kube.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		n.log.Warn("recording an event failed", "reason", reason, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// TrustRemoveOptions removes what the agent wrote on this node, and nothing else; the chart's post-delete
// cleanup runs it on every node.
type TrustRemoveOptions struct {
	NodeTrustOptions
	// TerminationLog receives the one-line result; empty skips it.
	TerminationLog string
}

// AddFlags registers the flags.
func (o *TrustRemoveOptions) AddFlags(fs *FlagSet) {
	o.NodeTrustOptions.addFlags(fs)
	fs.StringVar(&o.TerminationLog, "termination-log", "CONNECTED_REGISTRY_TERMINATION_LOG", DefaultTerminationLog,
		"file receiving the result for the container's termination message; empty writes none")
}

// Complete checks the flags.
func (o *TrustRemoveOptions) Complete() error { return o.NodeTrustOptions.complete() }

// Run removes the entry and prints what it removed and what it left.
func (o *TrustRemoveOptions) Run(_ context.Context, out io.Writer) error {
	removed, left, err := o.entry(0, realClock{}).Remove()
	var msg bytes.Buffer
	switch {
	case err != nil:
		fmt.Fprintf(&msg, "node %s: removing %s/%s failed: %v", o.NodeName, o.HostCertsDir, o.Host, err)
	case len(removed) == 0:
		fmt.Fprintf(&msg, "node %s: nothing of %s under %s/%s", o.NodeName, o.Owner, o.HostCertsDir, o.Host)
	default:
		fmt.Fprintf(&msg, "node %s: removed %d paths of %s under %s/%s", o.NodeName, len(removed), o.Owner, o.HostCertsDir, o.Host)
	}
	if len(left) > 0 {
		fmt.Fprintf(&msg, "; left %s", strings.Join(left, ", "))
	}
	fmt.Fprintln(out, msg.String())
	if o.TerminationLog != "" {
		if werr := os.WriteFile(o.TerminationLog, msg.Bytes(), 0o644); werr != nil && !errors.Is(werr, os.ErrNotExist) {
			fmt.Fprintf(out, "writing the termination message: %v\n", werr)
		}
	}
	return err
}
