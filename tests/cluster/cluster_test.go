package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// offMachine is an address of TEST-NET-3 (RFC 5737): only routes are looked
// up for it, no packet is ever sent.
const offMachine = "203.0.113.7"

// TestCluster brings the cluster up (or reuses a healthy one), runs a pod and
// a Job from the locally built pause image, and checks the version stamps and
// the network containment. It needs root and minutes: set CLUSTER_E2E=1.
// A cluster this test started is brought down at the end unless CLUSTER_KEEP=1.
func TestCluster(t *testing.T) {
	if os.Getenv("CLUSTER_E2E") != "1" {
		t.Skip("set CLUSTER_E2E=1 to run the single-node cluster test (root, minutes)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	o, err := OptionsFromEnv()
	require.NoError(t, err)
	o.Out = testWriter{t}
	require.NoError(t, o.Complete())
	reused := o.healthy(ctx) == nil
	if !reused && os.Getenv("CLUSTER_KEEP") != "1" {
		// Registered before Up: a failed Up is cleaned too.
		t.Cleanup(func() {
			began := time.Now()
			require.NoError(t, o.Down(context.Background()))
			t.Logf("cluster down in %s", time.Since(began).Round(100*time.Millisecond))
		})
	}
	began := time.Now()
	require.NoError(t, o.Up(ctx))
	t.Logf("cluster up in %s (reused: %v)", time.Since(began).Round(100*time.Millisecond), reused)
	client, _, err := o.clients()
	require.NoError(t, err)
	ns := createNamespace(ctx, t, client)

	t.Run("kubectl version reports the stamped version for client and server", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, o.path("bin", "kubectl"), "--kubeconfig", o.Kubeconfig(), "version", "-o", "json").Output()
		require.NoError(t, err)
		var v struct {
			ClientVersion struct{ GitVersion string } `json:"clientVersion"`
			ServerVersion struct{ GitVersion string } `json:"serverVersion"`
		}
		require.NoError(t, json.Unmarshal(out, &v))
		require.Equal(t, KubernetesVersion, v.ClientVersion.GitVersion)
		require.Equal(t, KubernetesVersion, v.ServerVersion.GitVersion)
	})

	t.Run("a pod of the local pause image runs without pulling", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "pause"},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "pause", Image: o.PauseImage, ImagePullPolicy: corev1.PullNever}},
			},
		}
		_, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		require.NoError(t, err)
		pod = waitPod(ctx, t, client, ns, "pause", func(p *corev1.Pod) bool { return podReady(p) })
		require.True(t, o.bridgeNet.Contains(net.ParseIP(pod.Status.PodIP)), "pod IP %s outside %s", pod.Status.PodIP, o.bridgeNet)

		t.Run("its network namespace has no route off the machine", func(t *testing.T) {
			pid := sandboxPID(ctx, t, o, pod)
			netns := fmt.Sprintf("--net=/proc/%d/ns/net", pid)
			out, err := exec.CommandContext(ctx, "nsenter", netns, "ip", "-4", "route", "show", "default").CombinedOutput()
			require.NoError(t, err, string(out))
			require.Empty(t, strings.TrimSpace(string(out)), "the pod has a default route")
			out, err = exec.CommandContext(ctx, "nsenter", netns, "ip", "route", "get", offMachine).CombinedOutput()
			require.Error(t, err, "route lookup of %s from the pod succeeded: %s", offMachine, out)
			require.Contains(t, string(out), "unreachable")
			out, err = exec.CommandContext(ctx, "nsenter", netns, "ip", "route", "get", o.firstSvcIP.String()).CombinedOutput()
			require.NoError(t, err, string(out))
			require.Contains(t, string(out), "via "+o.bridgeIP.String())
		})
	})

	t.Run("a Job of the local pause image runs to completion", func(t *testing.T) {
		logs := runJob(ctx, t, client, ns, "pause-version", o.PauseImage, "/pause", "-v")
		require.Contains(t, logs, "pause")
	})

	t.Run("a pod reaches the API server through the kubernetes Service with TLS", func(t *testing.T) {
		const ref = "localhost/cr-cluster/probe:v1"
		require.NoError(t, o.goBuild(ctx, "./cmd/probe", o.path("bin", "probe"), "-ldflags", "-s -w"))
		img, err := BinaryImage(o.path("bin", "probe"), "65535:65535")
		require.NoError(t, err)
		tarPath := o.path("images", "probe.tar")
		require.NoError(t, WriteOCITarball(img, ref, tarPath))
		require.NoError(t, o.ImportImage(ctx, tarPath))
		logs := runJob(ctx, t, client, ns, "probe", ref, "/probe")
		require.Contains(t, logs, fmt.Sprintf("https://%s:443/version %s", o.firstSvcIP, KubernetesVersion))
	})

	t.Run("nothing from a pod can leave the machine", func(t *testing.T) {
		require.NoError(t, o.ContainmentInPlace(ctx))
		for _, r := range o.containmentRules() {
			if r.bin == "iptables" {
				require.True(t, o.ruleExists(ctx, r.bin, r.table, r.rule), "%s -t %s rule %v missing", r.bin, r.table, r.rule)
			}
		}
		out, err := exec.CommandContext(ctx, "ip", "route", "get", o.firstSvcIP.String()).CombinedOutput()
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), "dev "+o.Bridge, "the Service range is not routed onto the bridge")
	})
}

// runJob runs a one-container Job to completion and returns its pod's log.
func runJob(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name, image string, command ...string) string {
	t.Helper()
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: name, Image: image, ImagePullPolicy: corev1.PullNever, Command: command,
				}},
			}},
		},
	}
	_, err := c.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	require.NoError(t, err)
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		j, err := c.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if j.Status.Failed > 0 {
			return false, fmt.Errorf("job %s failed: %+v", name, j.Status.Conditions)
		}
		return j.Status.Succeeded == 1, nil
	})
	pods, lerr := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + name})
	require.NoError(t, lerr)
	var logs strings.Builder
	for _, p := range pods.Items {
		out, _ := c.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		logs.Write(out)
	}
	require.NoError(t, err, "job %s, logs:\n%s", name, logs.String())
	return logs.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func createNamespace(ctx context.Context, t *testing.T, c kubernetes.Interface) string {
	t.Helper()
	ns, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cluster-test-"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = c.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

func waitPod(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		return done(p), nil
	})
	if err != nil {
		events, _ := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		for _, e := range events.Items {
			t.Logf("event %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	require.NoError(t, err, "pod %s/%s: %+v", ns, name, pod.Status)
	return pod
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// sandboxPID returns the PID of the pod's sandbox process, from CRI.
func sandboxPID(ctx context.Context, t *testing.T, o Options, pod *corev1.Pod) int {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+o.ContainerdSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": string(pod.UID)},
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
	}})
	require.NoError(t, err)
	require.Len(t, list.Items, 1)
	st, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: list.Items[0].Id, Verbose: true})
	require.NoError(t, err)
	var info struct {
		Pid int `json:"pid"`
	}
	require.NoError(t, json.Unmarshal([]byte(st.Info["info"]), &info))
	require.NotZero(t, info.Pid)
	return info.Pid
}
