package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/connected-registry/connected-registry/internal/trust"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

// agentRequestTimeout bounds each request of the trust agent to the API server.
const agentRequestTimeout = 10 * time.Second

// NodeTrustOptions say which certs.d entry is ours; the agent, its removal and the cleanup share them.
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
	fs.StringVar(&n.Host, "host", p+"HOST", "", "the registry's address as nodes pull from it, service.clusterIP:443, a host name or IP address and a port")
	fs.StringVar(&n.Owner, "owner", p+"OWNER", "", "the release owning the entry, namespace/release (required)")
	fs.StringVar(&n.NodeName, "node-name", "NODE_NAME", "", "this node's name, for reports")
}

// complete checks the options; requireHost is false for the removal, which finds the owner's entries itself.
func (n *NodeTrustOptions) complete(requireHost bool) error {
	switch {
	case n.Host == "" && requireHost:
		return usageErrorf("--host is required: the registry's clusterIP:443")
	case n.Host != "":
		// Checked here and again by trust.Entry: the host names a directory under certs.d.
		if err := trust.ValidHost(n.Host); err != nil {
			return usageErrorf("--host %v", err)
		}
	}
	if n.Owner == "" || strings.Count(n.Owner, "/") != 1 {
		return usageErrorf("--owner %q is not namespace/release", n.Owner)
	}
	if n.CertsDir == "" || n.HostCertsDir == "" {
		return usageErrorf("--certs-dir and --host-certs-dir must not be empty")
	}
	return nil
}

// release is the release part of Owner.
func (n *NodeTrustOptions) release() string {
	_, release, _ := strings.Cut(n.Owner, "/")
	return release
}

func (n *NodeTrustOptions) entry(grace time.Duration) *trust.Entry {
	return &trust.Entry{Dir: n.CertsDir, HostDir: n.HostCertsDir, Host: n.Host, Owner: n.Owner, PreviousCAGrace: grace}
}

// TrustAgentOptions runs the node agent of trust distribution (trust.Agent).
type TrustAgentOptions struct {
	*Common
	NodeTrustOptions
	// CAConfigMap is the trust bundle ConfigMap, read through the API; CAFile the CA as a file instead.
	CAConfigMap, CAFile string
	// ContainerdConfig and RegistriesYAML are read to tell whether containerd will use the entry.
	ContainerdConfig     string
	HostContainerdConfig string
	RegistriesYAML       string
	// Interval between two passes; PreviousCAGrace keeps a replaced CA trusted this long.
	Interval, PreviousCAGrace time.Duration
	// HealthAddr serves /readyz and /healthz.
	HealthAddr string
	// Namespace receives the Events, about this pod; empty sends none.
	Namespace string
	// PodName and PodUID name this pod, which the Events are about.
	PodName, PodUID string
	// Kubeconfig as in KubeOptions; empty in a pod.
	Kubeconfig string

	kube   KubeOptions
	events trust.EventSink
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
}

// Complete checks the flags and builds the API client and the event sink.
func (o *TrustAgentOptions) Complete() error {
	if err := o.NodeTrustOptions.complete(true); err != nil {
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
	if o.Namespace == "" {
		return nil
	}
	o.kube = KubeOptions{Common: o.Common, Namespace: o.Namespace, Kubeconfig: o.Kubeconfig, Timeout: agentRequestTimeout}
	if err := o.kube.completeClient(); err != nil {
		return err
	}
	if o.PodName == "" {
		return usageErrorf("--pod-name (POD_NAME) is required with --namespace: the agent's Events are about its pod")
	}
	o.events = &trust.PodEvents{Client: o.kube.Client, Namespace: o.Namespace, Node: o.NodeName, Pod: o.PodName, UID: o.PodUID, Log: o.Log}
	return nil
}

// Run serves /readyz and /healthz and keeps the node's entry in place until ctx ends.
func (o *TrustAgentOptions) Run(ctx context.Context, out io.Writer) error {
	a := &trust.Agent{
		Entry: o.entry(o.PreviousCAGrace), NodeName: o.NodeName, CAFile: o.CAFile,
		ContainerdConfig: o.ContainerdConfig, HostContainerdConfig: o.HostContainerdConfig, RegistriesYAML: o.RegistriesYAML,
		Interval: o.Interval, Events: o.events, Log: o.Log,
	}
	if o.CAConfigMap != "" {
		a.Bundle = &bundle.ConfigMap{Client: o.kube.Client, Namespace: o.Namespace, Name: o.CAConfigMap}
		a.Acks = &bundle.Acks{Client: o.kube.Client, Namespace: o.Namespace, Release: o.release()}
	}
	stop, err := serveHealth(o.HealthAddr, a.HealthHandler())
	if err != nil {
		return err
	}
	defer stop()
	return a.Run(ctx, out)
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
func (o *TrustRemoveOptions) Complete() error { return o.NodeTrustOptions.complete(false) }

// Run removes the owner's entries and prints what it removed and what it left.
func (o *TrustRemoveOptions) Run(_ context.Context, out io.Writer) error {
	msg, err := trust.Remove(o.entry(0), o.NodeName)
	fmt.Fprintln(out, msg)
	if o.TerminationLog != "" {
		if werr := os.WriteFile(o.TerminationLog, []byte(msg), 0o644); werr != nil && !errors.Is(werr, os.ErrNotExist) {
			fmt.Fprintf(out, "writing the termination message: %v\n", werr)
		}
	}
	return err
}
