package app

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/connected-registry/connected-registry/internal/clientauth"
	"github.com/connected-registry/connected-registry/internal/english"
	"github.com/connected-registry/connected-registry/internal/trust"
)

// CleanupOptions is the chart's post-delete hook (trust.Cleanup): it removes the trust entry from every node and
// the Secrets Helm does not own.
type CleanupOptions struct {
	KubeOptions
	NodeTrustOptions
	// Secrets to delete, by name; a missing one is fine.
	Secrets []string
	// Objects to delete, Kind/name items (trust.ObjectKinds); a missing one is fine.
	Objects []string
	// Image of the per-node pods: this binary's image; empty takes the image of this pod's container.
	Image string
	// PodName and Container name this pod and its container, whose image the per-node pods run when Image is empty.
	PodName, Container string
	PullPolicy         string
	// PodPrefix names the per-node pods, <prefix>-<hash of node>.
	PodPrefix string
	// Labels of the per-node pods, key=value items.
	Labels []string
	// Nodes is false when trust distribution is off: only Secrets are removed.
	Nodes bool
	// Poll is the interval between two looks at the per-node pods.
	Poll time.Duration
	// PullSecret is the name of the token server's pull Secrets in PullSecretNamespaces; only those marked with
	// PullSecretOwner (the release, <namespace>/<release>) are deleted.
	PullSecret, PullSecretOwner string
	PullSecretNamespaces        []string

	labels map[string]string
}

// AddFlags registers the flags.
func (o *CleanupOptions) AddFlags(fs *FlagSet) {
	o.KubeOptions.addFlags(fs, "CLEANUP", jobTimeoutHelp)
	o.NodeTrustOptions.addFlags(fs)
	const p = "CONNECTED_REGISTRY_CLEANUP_"
	fs.BoolVar(&o.Nodes, "nodes", p+"NODES", true, "remove the trust entry from every node")
	fs.ListVar(&o.Secrets, "secret", p+"SECRETS", nil, "Secrets to delete, comma-separated (certgen's and cert-manager's, never the user's)")
	fs.ListVar(&o.Objects, "delete", p+"DELETE", nil,
		"hook objects a failed install or upgrade left, Kind/name items, comma-separated; the kinds are "+english.List(trust.ObjectKinds))
	fs.StringVar(&o.Image, "image", p+"IMAGE", "", "image of the per-node removal pods; empty: the image of this pod's container (--pod-name, --container)")
	fs.StringVar(&o.PodName, "pod-name", "POD_NAME", "", "this pod's name, to run the per-node pods from its image when --image is empty")
	fs.StringVar(&o.Container, "container", p+"CONTAINER", "cleanup", "this pod's container whose image the per-node pods run when --image is empty")
	fs.StringVar(&o.PullPolicy, "pull-policy", p+"PULL_POLICY", string(corev1.PullIfNotPresent), "imagePullPolicy of the per-node pods")
	fs.StringVar(&o.PodPrefix, "pod-prefix", p+"POD_PREFIX", "connected-registry-trust-remove", "name prefix of the per-node pods")
	fs.ListVar(&o.Labels, "labels", p+"LABELS", nil, "labels of the per-node pods, key=value items, comma-separated")
	fs.ListVar(&o.PullSecretNamespaces, "pull-secret-namespaces", p+"PULL_SECRET_NAMESPACES", nil,
		"namespaces whose pull Secret (--pull-secret) the token server wrote, comma-separated")
	fs.StringVar(&o.PullSecret, "pull-secret", p+"PULL_SECRET", "connected-registry-pull", "name of the token server's pull Secrets")
	fs.StringVar(&o.PullSecretOwner, "pull-secret-owner", p+"PULL_SECRET_OWNER", "", "the release, <namespace>/<release>: only pull Secrets marked with it are deleted (required with --pull-secret-namespaces)")
	o.Poll = time.Second
}

// Complete checks the flags and builds the API client.
func (o *CleanupOptions) Complete() error {
	if o.Nodes {
		if err := o.NodeTrustOptions.complete(false); err != nil {
			return err
		}
		if o.Image == "" && o.PodName == "" {
			return usageErrorf("give --image or --pod-name (POD_NAME) with --nodes: the per-node pods run this binary's image")
		}
	}
	if len(o.PullSecretNamespaces) > 0 && (o.PullSecretOwner == "" || o.PullSecret == "") {
		return usageErrorf("--pull-secret-namespaces needs --pull-secret and --pull-secret-owner")
	}
	for _, obj := range o.Objects {
		kind, name, ok := strings.Cut(obj, "/")
		if !ok || name == "" || !slices.Contains(trust.ObjectKinds, kind) {
			return usageErrorf("--delete item %q is not Kind/name with a kind of %s", obj, english.List(trust.ObjectKinds))
		}
	}
	o.labels = map[string]string{}
	for _, kv := range o.Labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageErrorf("--labels item %q is not key=value", kv)
		}
		o.labels[k] = v
	}
	return o.KubeOptions.complete()
}

// Run removes the node entries, then the Secrets, printing one line per node and per Secret.
func (o *CleanupOptions) Run(ctx context.Context, out io.Writer) error {
	var origin trust.Origin
	if o.Nodes && o.PodName != "" {
		var err error
		if origin, err = trust.OwnPod(ctx, o.Client, o.Namespace, o.PodName, o.Container); err != nil {
			return err
		}
	}
	if o.Image == "" {
		o.Image = origin.Image
	}
	c := &trust.Cleanup{
		ImagePullSecrets: origin.ImagePullSecrets, PriorityClassName: origin.PriorityClassName,
		Client: o.Client, Namespace: o.Namespace, Nodes: o.Nodes,
		HostCertsDir: o.HostCertsDir, Host: o.Host, Owner: o.Owner,
		Image: o.Image, PullPolicy: corev1.PullPolicy(o.PullPolicy), PodPrefix: o.PodPrefix, Labels: o.labels,
		NodesTimeout: o.Timeout, Poll: o.Poll, Secrets: o.Secrets, Objects: o.Objects,
	}
	err := c.Run(ctx, out)
	if len(o.PullSecretNamespaces) > 0 {
		ps := &clientauth.PullSecrets{Client: o.Client, Name: o.PullSecret, Namespaces: o.PullSecretNamespaces, Owner: o.PullSecretOwner}
		err = errors.Join(err, ps.Delete(ctx, out))
	}
	return err
}
