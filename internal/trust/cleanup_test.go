package trust_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/connected-registry/connected-registry/internal/trust"
)

const (
	namespace    = "connected-registry"
	tlsSecret    = "cr-connected-registry-tls"
	caSecret     = "cr-connected-registry-tls-ca"
	cleanupImage = "ghcr.io/connected-registry/connected-registry:1.0.0"
)

func node(name string, ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
}

// kubelet finishes every pod created on client at once, in phase, with the termination message trust-remove
// writes, or leaves it Pending on an image it cannot pull; it keeps the pods as created, since the cleanup
// deletes them.
type kubelet struct {
	mu      sync.Mutex
	created []*corev1.Pod
}

func runPods(client *fake.Clientset, phase corev1.PodPhase) *kubelet {
	k := &kubelet{}
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod).DeepCopy()
		k.mu.Lock()
		k.created = append(k.created, pod.DeepCopy())
		k.mu.Unlock()
		pod.Status.Phase = phase
		state := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Message: "node " + pod.Spec.NodeName + ": removed 3 paths of connected-registry/cr under /etc/containerd/certs.d/10.96.0.50:443\n"}}
		if phase == corev1.PodPending {
			state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "pull access denied"}}
		}
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "trust-remove", State: state}}
		if err := client.Tracker().Create(a.GetResource(), pod, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, pod, nil
	})
	return k
}

func (k *kubelet) pods() []*corev1.Pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.created
}

func newCleanup(client *fake.Clientset, mutate ...func(*trust.Cleanup)) *trust.Cleanup {
	c := &trust.Cleanup{
		Client: client, Namespace: namespace, NodesTimeout: 5 * time.Second,
		HostCertsDir: "/etc/containerd/certs.d", Host: host, Owner: "connected-registry/cr",
		Secrets: []string{tlsSecret, caSecret},
		Image:   cleanupImage, PullPolicy: corev1.PullIfNotPresent, PodPrefix: "cr-connected-registry-trust-remove",
		Labels: map[string]string{"app.kubernetes.io/instance": "cr", "app.kubernetes.io/component": "cleanup"},
		Nodes:  true, Poll: 10 * time.Millisecond,
	}
	for _, f := range mutate {
		f(c)
	}
	return c
}

func podName(node string) string {
	s := sha256.Sum256([]byte(node))
	return "cr-connected-registry-trust-remove-" + hex.EncodeToString(s[:])[:10]
}

func TestCleanupRemovesTheTrustEntryOnEveryReadyNode(t *testing.T) {
	t.Parallel()
	ackLabels := map[string]string{"app.kubernetes.io/instance": "cr", "app.kubernetes.io/component": "trust-ack"}
	otherLabels := map[string]string{"app.kubernetes.io/instance": "other", "app.kubernetes.io/component": "trust-ack"}
	client := fake.NewClientset(node("worker-1", corev1.ConditionTrue), node("worker-2", corev1.ConditionFalse),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tlsSecret, Namespace: namespace}},
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "cr-trust-ack-worker-1", Namespace: namespace, Labels: ackLabels}},
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "other-trust-ack-worker-1", Namespace: namespace, Labels: otherLabels}})
	k := runPods(client, corev1.PodSucceeded)
	o := newCleanup(client)
	var out bytes.Buffer
	err := o.Run(context.Background(), &out)

	require.ErrorIs(t, err, trust.ErrCleanupIncomplete)
	require.EqualError(t, err, "cleanup incomplete: node worker-2")
	require.Equal(t, `node worker-2: not Ready, skipped: remove /etc/containerd/certs.d/10.96.0.50:443 on it by hand when it returns
node worker-1: removed 3 paths of connected-registry/cr under /etc/containerd/certs.d/10.96.0.50:443
acknowledgement leases: 1 deleted
secret cr-connected-registry-tls: deleted
secret cr-connected-registry-tls-ca: already gone
`, out.String())

	pods := k.pods()
	require.Len(t, pods, 1, "one pod, for the Ready node only")
	p := pods[0]
	require.Equal(t, podName("worker-1"), p.Name)
	require.Equal(t, namespace, p.Namespace)
	require.Equal(t, "worker-1", p.Spec.NodeName, "bound to its node, past the scheduler")
	require.Equal(t, map[string]string{"app.kubernetes.io/instance": "cr", "app.kubernetes.io/component": "cleanup"}, p.Labels)
	require.Equal(t, corev1.RestartPolicyNever, p.Spec.RestartPolicy)
	require.Equal(t, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, p.Spec.Tolerations, "tainted nodes are cleaned too")
	require.NotNil(t, p.Spec.AutomountServiceAccountToken)
	require.False(t, *p.Spec.AutomountServiceAccountToken, "no API token on the node")
	require.Len(t, p.Spec.Containers, 1)
	c := p.Spec.Containers[0]
	require.Equal(t, cleanupImage, c.Image)
	require.Equal(t, corev1.PullIfNotPresent, c.ImagePullPolicy)
	require.Equal(t, []string{"trust-remove", "--certs-dir=/host/certs.d", "--host-certs-dir=/etc/containerd/certs.d",
		"--host=10.96.0.50:443", "--owner=connected-registry/cr", "--node-name=worker-1"}, c.Args)
	require.Equal(t, []corev1.VolumeMount{{Name: "certs-d", MountPath: "/host/certs.d"}}, c.VolumeMounts)
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	require.Equal(t, []corev1.Volume{{Name: "certs-d", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: "/etc/containerd/certs.d", Type: &dirOrCreate}}}}, p.Spec.Volumes,
		"the host mount is certs.d and nothing else")
	sc := c.SecurityContext
	require.NotNil(t, sc)
	require.Equal(t, int64(0), *sc.RunAsUser, "root, to write the root-owned certs.d")
	require.False(t, *sc.AllowPrivilegeEscalation)
	require.True(t, *sc.ReadOnlyRootFilesystem)
	require.Equal(t, &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, sc.Capabilities)
	require.Nil(t, sc.Privileged)
	require.Equal(t, "10m", c.Resources.Requests.Cpu().String(), "a namespace's ResourceQuota without a LimitRange admits the pod")
	require.Equal(t, "16Mi", c.Resources.Requests.Memory().String())
	require.Equal(t, "64Mi", c.Resources.Limits.Memory().String())
	require.Equal(t, "100m", c.Resources.Limits.Cpu().String())
	_, err = client.CoordinationV1().Leases(namespace).Get(context.Background(), "other-trust-ack-worker-1", metav1.GetOptions{})
	require.NoError(t, err, "another release's acknowledgements stay")

	_, err = client.CoreV1().Pods(namespace).Get(context.Background(), p.Name, metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "the pod is deleted afterwards: %v", err)
	_, err = client.CoreV1().Secrets(namespace).Get(context.Background(), tlsSecret, metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "the Secret is deleted: %v", err)
	var deleted []string
	for _, a := range client.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok {
			deleted = append(deleted, a.GetResource().Resource+" "+d.GetName())
		}
	}
	require.Equal(t, []string{"pods " + p.Name, "pods " + p.Name, "leases cr-trust-ack-worker-1", "secrets " + tlsSecret, "secrets " + caSecret}, deleted,
		"a leftover pod of an earlier run is deleted before the create, the finished one after")
}

func TestCleanupReportsEachNode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		nodes   []runtime.Object
		phase   corev1.PodPhase
		timeout time.Duration
		wantOut string
		wantErr string
	}{
		{
			name:    "every Ready node cleaned should succeed, in node name order",
			nodes:   []runtime.Object{node("worker-2", corev1.ConditionTrue), node("worker-1", corev1.ConditionTrue)},
			phase:   corev1.PodSucceeded,
			wantOut: "node worker-1: removed 3 paths of connected-registry/cr under /etc/containerd/certs.d/10.96.0.50:443\nnode worker-2: removed 3 paths of connected-registry/cr under /etc/containerd/certs.d/10.96.0.50:443\n",
		},
		{
			name:    "a node without a Ready condition should be skipped and reported",
			nodes:   []runtime.Object{&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-3"}}},
			phase:   corev1.PodSucceeded,
			wantOut: "node worker-3: not Ready, skipped: remove /etc/containerd/certs.d/10.96.0.50:443 on it by hand when it returns\n",
			wantErr: "cleanup incomplete: node worker-3",
		},
		{
			name:    "a failed removal pod should be reported with its message",
			nodes:   []runtime.Object{node("worker-1", corev1.ConditionTrue)},
			phase:   corev1.PodFailed,
			wantOut: "node worker-1: removed 3 paths of connected-registry/cr under /etc/containerd/certs.d/10.96.0.50:443\n",
			wantErr: "cleanup incomplete: node worker-1",
		},
		{
			name:    "a removal pod that never runs should be reported with its waiting reason once the timeout ends",
			nodes:   []runtime.Object{node("worker-1", corev1.ConditionTrue)},
			phase:   corev1.PodPending,
			timeout: 200 * time.Millisecond,
			wantOut: "pod " + podName("worker-1") + " did not finish in time (pod " + podName("worker-1") + " on worker-1: ErrImagePull: pull access denied): remove /etc/containerd/certs.d/10.96.0.50:443 on its node by hand\n",
			wantErr: "cleanup incomplete: node worker-1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset(tc.nodes...)
			k := runPods(client, tc.phase)
			o := newCleanup(client, func(o *trust.Cleanup) {
				o.Secrets = nil
				if tc.timeout > 0 {
					o.NodesTimeout = tc.timeout
				}
			})
			var out bytes.Buffer
			err := o.Run(context.Background(), &out)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				require.ErrorIs(t, err, trust.ErrCleanupIncomplete)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.wantOut, out.String())
			for _, p := range k.pods() {
				_, err := client.CoreV1().Pods(namespace).Get(context.Background(), p.Name, metav1.GetOptions{})
				require.True(t, apierrors.IsNotFound(err), "pod %s is deleted: %v", p.Name, err)
			}
		})
	}
}

func TestCleanupWithoutNodes(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(node("worker-1", corev1.ConditionTrue),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: caSecret, Namespace: namespace}})
	k := runPods(client, corev1.PodSucceeded)
	// With trust distribution off the chart gives neither --host nor --owner nor --image.
	o := newCleanup(client, func(o *trust.Cleanup) {
		o.Nodes, o.Host, o.Owner, o.Image = false, "", "", ""
	})
	var out bytes.Buffer
	require.NoError(t, o.Run(context.Background(), &out))
	require.Equal(t, "secret cr-connected-registry-tls: already gone\nsecret cr-connected-registry-tls-ca: deleted\n", out.String())
	require.Empty(t, k.pods())
	require.Equal(t, []string{"delete secrets", "delete secrets"}, cleanupCalls(client), "no node is listed, no pod made")
}

func TestCleanupReportsASecretItCannotDelete(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	client.PrependReactor("delete", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(a.GetResource().GroupResource(), a.(k8stesting.DeleteAction).GetName(),
			errors.New(`User "system:serviceaccount:connected-registry:cleanup" cannot delete resource "secrets"`))
	})
	o := newCleanup(client, func(o *trust.Cleanup) { o.Nodes, o.Secrets = false, []string{tlsSecret} })
	var out bytes.Buffer
	err := o.Run(context.Background(), &out)
	require.EqualError(t, err, "cleanup incomplete: secret cr-connected-registry-tls")
	require.Equal(t, `secret cr-connected-registry-tls: secrets "cr-connected-registry-tls" is forbidden: User "system:serviceaccount:connected-registry:cleanup" cannot delete resource "secrets"`+"\n", out.String())
}

func cleanupCalls(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
	}
	return out
}

// A failed install keeps its preflight Job (and pod), the Job's RBAC and, if Helm was stopped before the Job ran,
// the input Secret holding tls.key: the uninstall's cleanup deletes them, and what Helm already deleted is no error.
func TestCleanupDeletesTheHooksAFailedInstallLeft(t *testing.T) {
	t.Parallel()
	const preflight = "cr-connected-registry-preflight"
	client := fake.NewClientset(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: preflight, Namespace: namespace}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: preflight, Namespace: namespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: preflight, Namespace: namespace}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: namespace + "-" + preflight}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cr-connected-registry-pull-check", Namespace: namespace}},
	)
	o := newCleanup(client, func(o *trust.Cleanup) {
		o.Nodes, o.Secrets = false, []string{preflight}
		o.Objects = []string{"Job/" + preflight, "ServiceAccount/" + preflight, "Role/" + preflight, "RoleBinding/" + preflight,
			"ClusterRole/" + namespace + "-" + preflight, "ClusterRoleBinding/" + namespace + "-" + preflight,
			"Pod/cr-connected-registry-pull-check"}
	})
	var out bytes.Buffer
	require.NoError(t, o.Run(context.Background(), &out))
	require.Equal(t, `secret cr-connected-registry-preflight: deleted
Job/cr-connected-registry-preflight: deleted (left by a failed hook: a failed install, upgrade or helm test)
ServiceAccount/cr-connected-registry-preflight: deleted (left by a failed hook: a failed install, upgrade or helm test)
ClusterRole/connected-registry-cr-connected-registry-preflight: deleted (left by a failed hook: a failed install, upgrade or helm test)
Pod/cr-connected-registry-pull-check: deleted (left by a failed hook: a failed install, upgrade or helm test)
`, out.String())
	_, err := client.BatchV1().Jobs(namespace).Get(context.Background(), preflight, metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err))
	for _, a := range client.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && a.GetResource().Resource == "jobs" {
			require.NotNil(t, d.GetDeleteOptions().PropagationPolicy, "the Job's pods go with it")
			require.Equal(t, metav1.DeletePropagationBackground, *d.GetDeleteOptions().PropagationPolicy)
		}
	}
}

// A namespace enforcing restricted refused the trust agents, and refuses the removal pods too: with no
// acknowledgement Lease of the release, no agent ever wrote, and the cleanup succeeds; with one, it fails naming
// the fix.
func TestCleanupInANamespaceThatRefusesTheRemovalPods(t *testing.T) {
	t.Parallel()
	refuse := func(client *fake.Clientset) {
		client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(a.GetResource().GroupResource(), "x",
				errors.New(`violates PodSecurity "restricted:latest": restricted volume types (volume "certs-d" uses restricted volume type "hostPath")`))
		})
	}
	t.Run("no agent ever acknowledged should succeed", func(t *testing.T) {
		t.Parallel()
		client := fake.NewClientset(node("worker-1", corev1.ConditionTrue))
		refuse(client)
		var out bytes.Buffer
		require.NoError(t, newCleanup(client, func(o *trust.Cleanup) { o.Secrets = nil }).Run(context.Background(), &out))
		require.Contains(t, out.String(), "node worker-1: the namespace's Pod Security level refuses the removal pod, and no trust agent of connected-registry/cr ever acknowledged a bundle")
	})
	t.Run("an agent that acknowledged should fail naming the fix", func(t *testing.T) {
		t.Parallel()
		client := fake.NewClientset(node("worker-1", corev1.ConditionTrue), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
			Name: "cr-trust-ack-worker-1", Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/instance": "cr", "app.kubernetes.io/component": "trust-ack"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("worker-1")}})
		refuse(client)
		var out bytes.Buffer
		err := newCleanup(client, func(o *trust.Cleanup) { o.Secrets = nil }).Run(context.Background(), &out)
		require.EqualError(t, err, "cleanup incomplete: node worker-1")
		require.Contains(t, out.String(), "node worker-1: label namespace connected-registry pod-security.kubernetes.io/enforce=privileged and uninstall again, or remove /etc/containerd/certs.d/10.96.0.50:443 on it by hand")
	})
}

func ptr[T any](v T) *T { return &v }
