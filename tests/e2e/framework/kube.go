package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// StorageClass is the class of the statically provisioned volumes the tests give the registry: the test cluster
// has no dynamic provisioner.
const StorageClass = "cr-e2e-local"

// EnsureStorageClass creates the no-provisioner StorageClass.
func (e *Env) EnsureStorageClass(ctx context.Context) error {
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: StorageClass},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: ptr(storagev1.VolumeBindingImmediate),
	}
	_, err := e.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// CreateVolume creates a hostPath PersistentVolume of StorageClass on the node, owned by the registry's user,
// and returns a function that deletes it and its directory.
func (e *Env) CreateVolume(ctx context.Context, name string) (func(), error) {
	dir := e.VolumeDir(name)
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(dir, 65532, 65532); err != nil {
		return nil, err
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			StorageClassName:              StorageClass,
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: ptr(corev1.HostPathDirectory)}},
		},
	}
	if _, err := e.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return func() {
		_ = e.Client.CoreV1().PersistentVolumes().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = os.RemoveAll(dir)
	}, nil
}

// VolumeDir is the node directory behind the volume CreateVolume made.
func (e *Env) VolumeDir(name string) string { return filepath.Join(e.State, "volumes", name) }

// TrustOnNode writes what a cluster-provided trust would: certs.d/<host>/{ca.crt,hosts.toml} for containerd, and
// returns a function that removes it.
func (e *Env) TrustOnNode(host string, caPEM []byte) (func(), error) {
	dir := filepath.Join(CertsDir, host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n",
		"https://"+host, "https://"+host, filepath.Join(dir, "ca.crt"))
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), caPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		return nil, err
	}
	return func() { _ = os.RemoveAll(dir) }, nil
}

// ContainerdSocket is the node's containerd (tests/cluster's default; CLUSTER_CONTAINERD_SOCKET overrides it there
// and here).
func ContainerdSocket() string {
	if s := os.Getenv("CLUSTER_CONTAINERD_SOCKET"); s != "" {
		return s
	}
	return "/run/containerd/containerd.sock"
}

// ForgetNodeImages removes image names from the node's containerd (namespace k8s.io), so that the kubelet pulls
// them again; names it does not hold are skipped. Content other images share stays.
func (e *Env) ForgetNodeImages(ctx context.Context, refs ...string) error {
	out, err := e.Combined(ctx, "ctr", append([]string{"--address", ContainerdSocket(), "-n", "k8s.io", "images", "rm"}, refs...)...)
	if err != nil {
		return fmt.Errorf("ctr images rm: %w: %s", err, out)
	}
	return nil
}

// Progress logs a line at most every few seconds while a wait goes on.
type Progress struct {
	e    *Env
	what string
	last time.Time
	msg  string
}

func (e *Env) Progress(what string) *Progress { return &Progress{e: e, what: what} }

func (p *Progress) Say(msg string) {
	if msg != p.msg || time.Since(p.last) > 10*time.Second {
		fmt.Fprintf(p.e.Log, "e2e: waiting for %s: %s\n", p.what, msg)
		p.msg, p.last = msg, time.Now()
	}
}

// WaitPodDone waits until the pod Succeeded (nil) or Failed (error), with readable progress.
func (e *Env) WaitPodDone(ctx context.Context, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	progress := e.Progress("pod " + ns + "/" + name)
	for {
		pod, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			switch pod.Status.Phase {
			case corev1.PodSucceeded:
				return pod, nil
			case corev1.PodFailed:
				return pod, fmt.Errorf("pod %s/%s failed: %s", ns, name, podState(pod))
			}
			progress.Say(podState(pod))
		}
		select {
		case <-ctx.Done():
			return pod, fmt.Errorf("pod %s/%s not done after %s: %s", ns, name, timeout, podState(pod))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func podState(pod *corev1.Pod) string {
	if pod == nil {
		return "not found"
	}
	parts := []string{string(pod.Status.Phase)}
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("%s waiting (%s: %s)", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s terminated (%s, exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		case cs.State.Running != nil:
			parts = append(parts, cs.Name+" running")
		}
	}
	return strings.Join(parts, "; ")
}

// Dump writes the namespace's pods, their logs and its events to the log, for a failed test, after a line on any
// node under pressure (a full disk taints the node and makes the kubelet delete images, far from the cause).
func (e *Env) Dump(ctx context.Context, ns string) {
	e.nodePressure(ctx)
	fmt.Fprintf(e.Log, "=== dump of namespace %s\n", ns)
	pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for i := range pods.Items {
			pod := &pods.Items[i]
			fmt.Fprintf(e.Log, "--- pod %s: %s\n", pod.Name, podState(pod))
			for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
				raw, err := e.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: ptr(int64(60))}).DoRaw(ctx)
				if err == nil {
					fmt.Fprintf(e.Log, "--- logs %s/%s\n%s\n", pod.Name, c.Name, raw)
				}
			}
		}
	}
	events, err := e.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		sort.Slice(events.Items, func(i, j int) bool { return events.Items[i].LastTimestamp.Before(&events.Items[j].LastTimestamp) })
		fmt.Fprintln(e.Log, "--- events")
		for _, ev := range events.Items {
			fmt.Fprintf(e.Log, "%s %s %s/%s: %s\n", ev.Type, ev.Reason, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Message)
		}
	}
}

// Leftovers lists every namespaced object in ns, of every listable kind, except what Kubernetes itself puts in
// each namespace (the default ServiceAccount, the kube-root-ca.crt ConfigMap) and Events.
func (e *Env) Leftovers(ctx context.Context, ns string) ([]string, error) {
	dyn, err := dynamic.NewForConfig(e.REST)
	if err != nil {
		return nil, err
	}
	lists, err := e.Client.Discovery().ServerPreferredNamespacedResources()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			return nil, err
		}
		for _, r := range list.APIResources {
			if !contains(r.Verbs, "list") || r.Name == "events" {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(r.Name)).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, fmt.Errorf("listing %s: %w", r.Name, err)
			}
			for _, it := range items.Items {
				if (r.Kind == "ServiceAccount" && it.GetName() == "default") || (r.Kind == "ConfigMap" && it.GetName() == "kube-root-ca.crt") {
					continue
				}
				out = append(out, r.Kind+"/"+it.GetName())
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// nodePressure writes "e2e: node <name> under pressure: ..." for each node with a pressure condition, with the free
// space of the disk that holds the cluster's state (ci/test-failures.sh repeats these lines at the end of a run).
func (e *Env) nodePressure(ctx context.Context) {
	nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, n := range nodes.Items {
		var under []string
		for _, c := range n.Status.Conditions {
			if c.Type != corev1.NodeReady && c.Status == corev1.ConditionTrue {
				under = append(under, string(c.Type)+" ("+c.Message+")")
			}
		}
		if len(under) == 0 {
			continue
		}
		free := "unknown"
		var st syscall.Statfs_t
		if syscall.Statfs(e.State, &st) == nil {
			free = fmt.Sprintf("%.1f GB", float64(st.Bavail)*float64(st.Bsize)/1e9)
		}
		fmt.Fprintf(e.Log, "e2e: node %s under pressure: %s; free disk at %s: %s\n", n.Name, strings.Join(under, ", "), e.State, free)
	}
}
