package trust

import (
	"bytes"
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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/connected-registry/connected-registry/internal/english"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

const (
	// SecretsTimeout bounds the deletion of the Secrets, apart from the nodes: a node that used up the nodes'
	// time must not keep them.
	SecretsTimeout = 30 * time.Second
	// podCreateTimeout bounds the retries of a removal pod's creation while the namespace's default
	// ServiceAccount is not there yet.
	podCreateTimeout = 30 * time.Second
	// removalCertsDir is where a removal pod mounts the node's certs.d directory.
	removalCertsDir = "/host/certs.d"
	// maxPodPrefix keeps a removal pod's name, prefix-<10 hex digits>, within 63 characters.
	maxPodPrefix = 52
)

// ErrCleanupIncomplete is returned when something the release made could not be removed; the output names it.
var ErrCleanupIncomplete = errors.New("cleanup incomplete")

// Cleanup is the chart's post-delete hook: it removes what outlives the release's own objects. That is the trust
// entry the agent wrote on each node (one short pod per node runs trust-remove there, and nothing but that entry
// is touched) and the Secrets certgen or cert-manager made, which Helm does not own.
type Cleanup struct {
	Client    kubernetes.Interface
	Namespace string
	// Nodes is false when trust distribution is off: only Secrets are removed.
	Nodes bool
	// HostCertsDir, Host and Owner say which entry is the release's: HostCertsDir/Host on each node, owned by
	// Owner (namespace/release).
	HostCertsDir, Host, Owner string
	// Image of the per-node pods: the in-cluster binary's image, whose entrypoint runs trust-remove.
	Image      string
	PullPolicy corev1.PullPolicy
	// ImagePullSecrets and PriorityClassName of the per-node pods.
	ImagePullSecrets  []corev1.LocalObjectReference
	PriorityClassName string
	// PodPrefix names the per-node pods, <prefix>-<hash of node>.
	PodPrefix string
	// Labels of the per-node pods.
	Labels map[string]string
	// NodesTimeout bounds the removal on the nodes.
	NodesTimeout time.Duration
	// Poll is the interval between two looks at the per-node pods.
	Poll time.Duration
	// Secrets to delete, by name; a missing one is fine.
	Secrets []string
	// Objects to delete, as Kind/name: the hooks a failed install or upgrade leaves for kubectl logs (Job, with
	// its pods), and their ServiceAccount, Role, RoleBinding, ClusterRole and ClusterRoleBinding. A missing one is
	// fine.
	Objects []string
}

// ObjectKinds are the kinds Objects may name.
var ObjectKinds = []string{"Job", "Pod", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}

// deleteObject deletes one object of Objects.
func (c *Cleanup) deleteObject(ctx context.Context, kind, name string) error {
	background := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &background}
	switch kind {
	case "Job":
		return c.Client.BatchV1().Jobs(c.Namespace).Delete(ctx, name, opts)
	case "Pod":
		return c.Client.CoreV1().Pods(c.Namespace).Delete(ctx, name, opts)
	case "ServiceAccount":
		return c.Client.CoreV1().ServiceAccounts(c.Namespace).Delete(ctx, name, opts)
	case "Role":
		return c.Client.RbacV1().Roles(c.Namespace).Delete(ctx, name, opts)
	case "RoleBinding":
		return c.Client.RbacV1().RoleBindings(c.Namespace).Delete(ctx, name, opts)
	case "ClusterRole":
		return c.Client.RbacV1().ClusterRoles().Delete(ctx, name, opts)
	case "ClusterRoleBinding":
		return c.Client.RbacV1().ClusterRoleBindings().Delete(ctx, name, opts)
	}
	return fmt.Errorf("cannot delete a %s: the kinds are %s", kind, english.List(ObjectKinds))
}

// Run removes the node entries, then the Secrets, printing one line per node and per Secret.
func (c *Cleanup) Run(ctx context.Context, out io.Writer) error {
	var failed []string
	if c.Nodes {
		nctx, cancel := context.WithTimeout(ctx, c.NodesTimeout)
		failed = append(failed, c.cleanNodes(nctx, out, c.anyAck(nctx))...)
		cancel()
	}
	ctx, cancel := context.WithTimeout(ctx, SecretsTimeout)
	defer cancel()
	if c.Nodes {
		// The agents' acknowledgement Leases: the agents made them, so Helm does not own them.
		_, release, _ := strings.Cut(c.Owner, "/")
		n, err := bundle.Acks{Client: c.Client, Namespace: c.Namespace, Release: release}.Delete(ctx)
		if err != nil {
			fmt.Fprintf(out, "acknowledgement leases: %v\n", err)
			failed = append(failed, "acknowledgement leases")
		} else if n > 0 {
			fmt.Fprintf(out, "acknowledgement leases: %d deleted\n", n)
		}
	}
	for _, name := range c.Secrets {
		err := c.Client.CoreV1().Secrets(c.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
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
	for _, o := range c.Objects {
		kind, name, _ := strings.Cut(o, "/")
		err := c.deleteObject(ctx, kind, name)
		switch {
		case apierrors.IsNotFound(err):
			// The usual case: Helm deleted the hook when it succeeded.
		case err != nil:
			fmt.Fprintf(out, "%s: %v\n", o, err)
			failed = append(failed, o)
		default:
			fmt.Fprintf(out, "%s: deleted (left by a failed hook: a failed install, upgrade or helm test)\n", o)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrCleanupIncomplete, strings.Join(failed, ", "))
	}
	return nil
}

// anyAck tells whether any trust agent of the release acknowledged a bundle, that is, ran and wrote its entry. It
// errs on the side of yes.
func (c *Cleanup) anyAck(ctx context.Context) bool {
	_, release, _ := strings.Cut(c.Owner, "/")
	acks, err := bundle.Acks{Client: c.Client, Namespace: c.Namespace, Release: release}.List(ctx)
	return err != nil || len(acks) > 0
}

// podSecurityRefused tells whether err is Pod Security admission refusing a pod.
func podSecurityRefused(err error) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "violates PodSecurity")
}

// cleanNodes runs trust-remove on every Ready node, whatever its labels today: a node labelled at install and
// unlabelled since still holds the entry, and a node that never had one reports nothing to remove. acked says whether
// any agent of the release ever acknowledged a bundle.
func (c *Cleanup) cleanNodes(ctx context.Context, out io.Writer, acked bool) []string {
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(out, "listing nodes: %v\n", err)
		return []string{"nodes"}
	}
	var failed []string
	pods := map[string]string{} // node -> pod
	for _, n := range nodes.Items {
		if !nodeReady(&n) {
			fmt.Fprintf(out, "node %s: not Ready, skipped: remove %s/%s on it by hand when it returns\n", n.Name, c.HostCertsDir, c.Host)
			failed = append(failed, "node "+n.Name)
			continue
		}
		pod := c.removalPod(n.Name)
		_ = c.Client.CoreV1().Pods(c.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
		if _, err := c.createPod(ctx, pod); err != nil {
			if podSecurityRefused(err) && !acked {
				// The namespace's Pod Security level refused the trust agent just as it refuses this pod: no agent
				// of the release ran, so there is nothing of it on the node.
				fmt.Fprintf(out, "node %s: the namespace's Pod Security level refuses the removal pod, and no trust agent of %s ever "+
					"acknowledged a bundle (the same level refused them), so none wrote an entry: nothing to remove\n", n.Name, c.Owner)
				continue
			}
			fmt.Fprintf(out, "node %s: creating pod %s: %v\n", n.Name, pod.Name, err)
			if podSecurityRefused(err) {
				fmt.Fprintf(out, "node %s: label namespace %s pod-security.kubernetes.io/enforce=privileged and uninstall again, or remove %s/%s on it by hand\n",
					n.Name, c.Namespace, c.HostCertsDir, c.Host)
			}
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
		msg, ok := c.waitPod(ctx, pods[node])
		fmt.Fprintln(out, msg)
		if !ok {
			failed = append(failed, "node "+node)
		}
		grace := int64(0)
		_ = c.Client.CoreV1().Pods(c.Namespace).Delete(context.WithoutCancel(ctx), pods[node], metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	return failed
}

// createPod retries while the namespace's default ServiceAccount is not there yet, as on a fresh namespace.
func (c *Cleanup) createPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	var created *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, c.Poll, podCreateTimeout, true, func(ctx context.Context) (bool, error) {
		var err error
		created, err = c.Client.CoreV1().Pods(c.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		// AlreadyExists: the pod of an earlier run is still being deleted. Forbidden for a missing ServiceAccount:
		// the namespace's default ServiceAccount is not there yet. The API server's ServiceAccount admission
		// plugin refuses the pod with a plain Forbidden status whose only mark is its message ("error looking up
		// service account <ns>/default: ..."): no reason, cause or detail tells it apart from an RBAC refusal, so
		// the message is all there is to match. An RBAC refusal fails at once.
		if apierrors.IsAlreadyExists(err) || apierrors.IsForbidden(err) && strings.Contains(err.Error(), "service account") {
			return false, nil
		}
		return err == nil, err
	})
	return created, err
}

func (c *Cleanup) waitPod(ctx context.Context, name string) (string, bool) {
	var last *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, c.Poll, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, name, metav1.GetOptions{})
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
		return fmt.Sprintf("pod %s did not finish in time (%s): remove %s/%s on its node by hand", name, state, c.HostCertsDir, c.Host), false
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

// RemovalResources are the requests and limits of each per-node removal pod: without them, a namespace with a
// ResourceQuota on CPU or memory and no LimitRange refuses the pods, and the node entries stay. trust-remove reads
// a directory and deletes a few files.
var RemovalResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Mi")},
	Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("16Mi")},
}

// removalPod runs `trust-remove` on one node with the same narrow host mount as the agent: root on the host's
// certs.d only, no capabilities, read-only root filesystem, no API token.
func (c *Cleanup) removalPod(node string) *corev1.Pod {
	sum := sha256.Sum256([]byte(node))
	name := fmt.Sprintf("%s-%s", truncate(c.PodPrefix, maxPodPrefix), hex.EncodeToString(sum[:])[:10])
	name = strings.ReplaceAll(name, "...", "")
	f, t := false, true
	root := int64(0)
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: c.Labels},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			ImagePullSecrets:             c.ImagePullSecrets,
			PriorityClassName:            c.PriorityClassName,
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: &f,
			EnableServiceLinks:           &f,
			Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			SecurityContext:              &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name:            "trust-remove",
				Image:           c.Image,
				ImagePullPolicy: c.PullPolicy,
				Args: []string{"trust-remove", "--certs-dir=" + removalCertsDir, "--host-certs-dir=" + c.HostCertsDir,
					"--host=" + c.Host, "--owner=" + c.Owner, "--node-name=" + node},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: &root, RunAsNonRoot: &f, AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &t,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "certs-d", MountPath: removalCertsDir}},
				// A namespace with a ResourceQuota on CPU or memory and no LimitRange admits only pods that set them.
				Resources: RemovalResources,
			}},
			Volumes: []corev1.Volume{{Name: "certs-d", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: c.HostCertsDir, Type: &dirOrCreate}}}},
		},
	}
}

// Remove removes from this node every entry of e.Owner under e.Dir (the trust-remove command, which Cleanup's
// pods run): the one for e.Host, if given, and any other the release's agent wrote there, since a release may
// have served another address than the one its last values name (an upgrade to a new address that failed). It
// says in one line what it removed and what it left. Entries of other owners are left alone, and finding nothing
// of the owner's is no error.
func Remove(e *Entry, node string) (string, error) {
	hosts, err := OwnedHosts(e.Dir, e.Owner)
	if err != nil {
		return fmt.Sprintf("node %s: reading %s failed: %v", node, e.HostDir, err), err
	}
	if e.Host != "" && !slices.Contains(hosts, e.Host) {
		hosts = append([]string{e.Host}, hosts...)
	}
	var removed, left, from []string
	for _, h := range hosts {
		entry := *e
		entry.Host = h
		r, l, err := entry.Remove()
		removed, left = append(removed, r...), append(left, l...)
		if err != nil {
			return fmt.Sprintf("node %s: removing %s/%s failed: %v", node, e.HostDir, h, err), err
		}
		if len(r) > 0 {
			from = append(from, e.HostDir+"/"+h)
		}
	}
	var msg bytes.Buffer
	if len(removed) == 0 {
		fmt.Fprintf(&msg, "node %s: nothing of %s under %s", node, e.Owner, e.HostDir)
	} else {
		fmt.Fprintf(&msg, "node %s: removed %d paths of %s under %s", node, len(removed), e.Owner, english.List(from))
	}
	if len(left) > 0 {
		for i, l := range left {
			left[i] = strings.Replace(l, e.Dir, e.HostDir, 1)
		}
		fmt.Fprintf(&msg, "; left %s", strings.Join(left, ", "))
	}
	return msg.String(), nil
}
