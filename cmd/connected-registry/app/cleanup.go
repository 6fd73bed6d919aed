package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// ErrCleanupIncomplete is returned when something the release made could not be removed; the output names it.
var ErrCleanupIncomplete = errors.New("cleanup incomplete")

// CleanupOptions is the chart's post-delete hook: it removes what outlives the release's own objects. That is
// the trust entry the agent wrote on each node (one short pod per node runs trust-remove there, and nothing but
// that entry is touched) and the Secrets certgen or cert-manager made, which Helm does not own.
type CleanupOptions struct {
	KubeOptions
	NodeTrustOptions
	// Secrets to delete, by name; a missing one is fine.
	Secrets []string
	// Image of the per-node pods: this binary's image.
	Image      string
	PullPolicy string
	// PodPrefix names the per-node pods, <prefix>-<hash of node>.
	PodPrefix string
	// Labels of the per-node pods, key=value items.
	Labels []string
	// Nodes is false when trust distribution is off: only Secrets are removed.
	Nodes bool
	// Poll is the interval between two looks at the per-node pods.
	Poll time.Duration
}

// AddFlags registers the flags.
func (o *CleanupOptions) AddFlags(fs *FlagSet) {
	o.KubeOptions.addFlags(fs, "CLEANUP")
	o.NodeTrustOptions.addFlags(fs)
	const p = "CONNECTED_REGISTRY_CLEANUP_"
	fs.BoolVar(&o.Nodes, "nodes", p+"NODES", true, "remove the trust entry from every node")
	fs.ListVar(&o.Secrets, "secret", p+"SECRETS", nil, "Secrets to delete, comma-separated (certgen's and cert-manager's, never the user's)")
	fs.StringVar(&o.Image, "image", p+"IMAGE", "", "image of the per-node removal pods: this binary's own (required with --nodes)")
	fs.StringVar(&o.PullPolicy, "pull-policy", p+"PULL_POLICY", string(corev1.PullIfNotPresent), "imagePullPolicy of the per-node pods")
	fs.StringVar(&o.PodPrefix, "pod-prefix", p+"POD_PREFIX", "connected-registry-trust-remove", "name prefix of the per-node pods")
	fs.ListVar(&o.Labels, "labels", p+"LABELS", nil, "labels of the per-node pods, key=value items, comma-separated")
	o.Poll = time.Second
}

// Complete checks the flags.
func (o *CleanupOptions) Complete() error {
	if o.Nodes {
		if err := o.NodeTrustOptions.complete(); err != nil {
			return err
		}
		if o.Image == "" {
			return usageErrorf("--image is required with --nodes: the per-node pods run this binary")
		}
	}
	if _, err := parseLabels(o.Labels); err != nil {
		return err
	}
	return o.KubeOptions.complete("cleanup")
}

func parseLabels(items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range items {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--labels item %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// Run removes the node entries, then the Secrets, printing one line per node and per Secret.
func (o *CleanupOptions) Run(ctx context.Context, out io.Writer) error {
	var failed []string
	if o.Nodes {
		nctx, cancel := o.withTimeout(ctx)
		failed = append(failed, o.cleanNodes(nctx, out)...)
		cancel()
	}
	// The Secrets get their own time: a node that used up --timeout must not keep them.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, name := range o.Secrets {
		err := o.Client.CoreV1().Secrets(o.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
		switch {
		case apierrors.IsNotFound(err):
			fmt.Fprintf(out, "secret %s: already gone\n", name)
		case err != nil:
			fmt.Fprintf(out, "secret %s: %v\n", name, err)
			failed = append(failed, "secret "+name)
		default:
			fmt.Fprintf(out, "secret %s: deleted\n", name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrCleanupIncomplete, strings.Join(failed, ", "))
	}
	return nil
}

// cleanNodes runs trust-remove on every Ready node, whatever its labels today: a node labelled at install and
// unlabelled since still holds the entry, and a node that never had one reports nothing to remove.
func (o *CleanupOptions) cleanNodes(ctx context.Context, out io.Writer) []string {
	nodes, err := o.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(out, "listing nodes: %v\n", err)
		return []string{"nodes"}
	}
	labels, _ := parseLabels(o.Labels)
	var failed []string
	pods := map[string]string{} // node -> pod
	for _, n := range nodes.Items {
		if !nodeReady(&n) {
			fmt.Fprintf(out, "node %s: not Ready, skipped: remove %s/%s on it by hand when it returns\n", n.Name, o.HostCertsDir, o.Host)
			failed = append(failed, "node "+n.Name)
			continue
		}
		pod := o.removalPod(n.Name, labels)
		_ = o.Client.CoreV1().Pods(o.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
		if _, err := o.createPod(ctx, pod); err != nil {
			fmt.Fprintf(out, "node %s: creating pod %s: %v\n", n.Name, pod.Name, err)
			failed = append(failed, "node "+n.Name)
			continue
		}
		pods[n.Name] = pod.Name
	}
	names := make([]string, 0, len(pods))
	for node := range pods {
		names = append(names, node)
	}
	slices.Sort(names)
	for _, node := range names {
		msg, ok := o.waitPod(ctx, pods[node])
		fmt.Fprintln(out, msg)
		if !ok {
			failed = append(failed, "node "+node)
		}
		grace := int64(0)
		_ = o.Client.CoreV1().Pods(o.Namespace).Delete(context.WithoutCancel(ctx), pods[node], metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	return failed
}

// createPod retries while the namespace's default ServiceAccount is not there yet, as on a fresh namespace.
func (o *CleanupOptions) createPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	var created *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, o.Poll, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		created, err = o.Client.CoreV1().Pods(o.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		// AlreadyExists: the pod of an earlier run is still being deleted. Forbidden: the namespace's default
		// ServiceAccount is not there yet ("error looking up service account").
		if apierrors.IsAlreadyExists(err) || apierrors.IsForbidden(err) && strings.Contains(err.Error(), "service account") {
			return false, nil
		}
		return err == nil, err
	})
	return created, err
}

func (o *CleanupOptions) waitPod(ctx context.Context, name string) (string, bool) {
	var last *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, o.Poll, true, func(ctx context.Context) (bool, error) {
		p, err := o.Client.CoreV1().Pods(o.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil {
		state := "not created"
		if last != nil {
			state = podSummary(last)
		}
		return fmt.Sprintf("pod %s did not finish in time (%s): remove %s/%s on its node by hand", name, state, o.HostCertsDir, o.Host), false
	}
	msg := podSummary(last)
	return msg, last.Status.Phase == corev1.PodSucceeded
}

func podSummary(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil && t.Message != "" {
			return strings.TrimSpace(t.Message)
		}
		if w := cs.State.Waiting; w != nil {
			return fmt.Sprintf("pod %s on %s: %s: %s", p.Name, p.Spec.NodeName, w.Reason, w.Message)
		}
	}
	return fmt.Sprintf("pod %s on %s: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// removalPod runs `trust-remove` on one node with the same narrow host mount as the agent: root on the host's
// certs.d only, no capabilities, read-only root filesystem, no API token.
func (o *CleanupOptions) removalPod(node string, labels map[string]string) *corev1.Pod {
	sum := sha256.Sum256([]byte(node))
	name := fmt.Sprintf("%s-%s", truncate(o.PodPrefix, 52), hex.EncodeToString(sum[:])[:10])
	name = strings.ReplaceAll(name, "...", "")
	f, t := false, true
	root := int64(0)
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: &f,
			EnableServiceLinks:           &f,
			Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			SecurityContext:              &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name:            "trust-remove",
				Image:           o.Image,
				ImagePullPolicy: corev1.PullPolicy(o.PullPolicy),
				Args: []string{"trust-remove", "--certs-dir=/host/certs.d", "--host-certs-dir=" + o.HostCertsDir,
					"--host=" + o.Host, "--owner=" + o.Owner, "--node-name=" + node},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: &root, RunAsNonRoot: &f, AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &t,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "certs-d", MountPath: "/host/certs.d"}},
			}},
			Volumes: []corev1.Volume{{Name: "certs-d", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: o.HostCertsDir, Type: &dirOrCreate}}}},
		},
	}
}
