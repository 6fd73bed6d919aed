package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// childClusterIP and child2ClusterIP are the nested (site) releases' Services, beside the top release's
// framework.ClusterIP.
const (
	childClusterIP  = "10.96.0.51"
	child2ClusterIP = "10.96.0.52"
)

// TestClientTokensAndNestedRegistries walks issue 19's story with two releases and one helm CLI:
//
//  1. The top release (framework.ClusterIP) has client tokens on and writes a pull Secret into an application
//     namespace. There, a pod without credentials fails to pull with a 401 in its events; a pod with
//     imagePullSecrets is pulled by the node's containerd, which fetches its token from the realm on the
//     registry's own host:port with the TLS settings of the host's hosts.toml.
//  2. The child release (childClusterIP, another namespace) has the top release as its parent: it authenticates
//     with a client token of the top release and trusts its CA. A node pulls through the child, which fetches
//     from the top release, which fetches from the ACR-like parent; the child's pre-sync fills it through the top
//     release.
//  3. The ACR-like parent is stopped: both levels serve what they cached.
//  4. The child is uninstalled: the top release still serves. A second child fills its cache through the top
//     release; the top release is uninstalled: the second child still serves what it cached, and the top
//     release's pull Secret is gone from the application namespace. No release leaves anything behind.
func TestClientTokensAndNestedRegistries(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	inst := framework.CLIInstaller("helm4")
	topNS, siteNS, site2NS, appNS := "cr-e2e-nested-top", "cr-e2e-nested-site", "cr-e2e-nested-site2", "cr-e2e-nested-app"
	topHost, childHost, child2Host := framework.RegistryHost, net.JoinHostPort(childClusterIP, "443"), net.JoinHostPort(child2ClusterIP, "443")
	hello := "/" + framework.HelloImage
	const presyncRepo = "testdata/nested"
	syncTag := "nested-" + inst.Name()
	digest := pushUnpulledImage(t, ctx, presyncRepo+":"+syncTag)

	top, err := env.PrepareBYOCSite(ctx, topNS, "top", true)
	require.NoError(t, err)
	t.Cleanup(top.Cleanup)
	site, err := env.PrepareBYOCSiteAt(ctx, siteNS, "site", childClusterIP, true)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	_, err = env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Namespaces().Delete(context.Background(), appNS, metav1.DeleteOptions{})
	})
	installed := map[string]string{}
	t.Cleanup(func() {
		if t.Failed() {
			for _, ns := range []string{topNS, siteNS, site2NS, appNS} {
				env.Dump(context.Background(), ns)
			}
		}
		for release, ns := range installed {
			_ = inst.Uninstall(context.Background(), env, release, ns)
		}
	})

	// The top release's client tokens: "site" for the child (every repository), "node" for the application
	// namespace's pods (testdata/* only); the application's pull Secret holds "node".
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
		require.NoError(t, err)
		return string(h)
	}
	createSecret(t, ctx, topNS, "client-tokens", map[string]string{
		"site": "password: " + hash("site-pw") + "\nscope:\n- repositories: [\"*\", \"*/*\", \"*/*/*\"]\n  actions: [read]\n",
		"node": "password: " + hash("node-pw") + "\nscope:\n- repositories: [\"testdata/*\"]\n  actions: [read]\n",
	})
	createSecret(t, ctx, topNS, "node-token", map[string]string{"username": "node", "password": "node-pw"})
	topValues := writeValues(t, topNS, map[string]any{"clientTokens": map[string]any{
		"enabled": true, "secret": "client-tokens",
		"pullSecret": map[string]any{"namespaces": []any{appNS}, "credentialsSecret": "node-token"},
	}})
	start := time.Now()
	require.NoError(t, inst.Install(ctx, env, "top", topNS, []string{top.ValuesFile, topValues}))
	installed["top"] = topNS
	t.Logf("top release installed and Ready in %s", time.Since(start).Round(100*time.Millisecond))

	// 1. Client tokens, as the node's containerd meets them.
	pullSecret := waitSecret(t, ctx, appNS, "connected-registry-pull")
	require.Equal(t, topNS+"/top", pullSecret.Annotations["connected-registry.io/pull-secret-of"])
	events := failedPullEvents(t, ctx, appNS, "anonymous", topHost+hello)
	require.Contains(t, events, "401 Unauthorized", "a pod without credentials sees the registry's 401 in its events")
	t.Logf("a pod without credentials: %s", events)
	runPod(t, ctx, appNS, "with-pull-secret", topHost+hello, "connected-registry-pull", "")

	// 2. The child, whose parent is the top release.
	createSecret(t, ctx, siteNS, "top-token", map[string]string{"username": "site", "password": "site-pw"})
	childValues := writeValues(t, siteNS, map[string]any{
		"registry":      map[string]any{"parent": map[string]any{"url": "https://" + topHost, "credentialsSecret": "top-token"}},
		"sync.enabled":  true,
		"sync.schedule": "* * * * *",
		"sync":          map[string]any{"repositories": []any{map[string]any{"name": presyncRepo, "tags": []any{syncTag}}}},
	})
	start = time.Now()
	require.NoError(t, inst.Install(ctx, env, "site", siteNS, []string{site.ValuesFile, childValues}))
	installed["site"] = siteNS
	t.Logf("child release installed and Ready in %s", time.Since(start).Round(100*time.Millisecond))
	runPod(t, ctx, siteNS, "through-child", childHost+hello, "", "")
	st := waitSynced(t, ctx, siteNS, "site-connected-registry-sync-status", presyncRepo, syncTag, 3*time.Minute)
	require.Equal(t, digest.String(), st.Tags[syncTag].Digest, "the child's pre-sync holds the digest the top parent holds")

	// 3. The ACR-like parent stops: both levels serve what they cached, the pre-synced image included, which no
	// node pulled before.
	env.StopParent()
	parentUp := false
	t.Cleanup(func() {
		if !parentUp {
			require.NoError(t, env.StartParentAgain(context.Background()))
		}
	})
	runPod(t, ctx, appNS, "top-cached", topHost+hello, "connected-registry-pull", "")
	runPod(t, ctx, siteNS, "child-cached", childHost+hello, "", "")
	runPod(t, ctx, siteNS, "child-presynced", childHost+"/"+presyncRepo+":"+syncTag, "", digest.String())

	// 4. Uninstalling either release leaves the other working. The child goes first: the top release still
	// serves its cache (the cloud parent is still down) to the application's pods.
	for _, name := range []string{"parent-credentials", "top-token"} {
		require.NoError(t, env.Client.CoreV1().Secrets(siteNS).Delete(ctx, name, metav1.DeleteOptions{}))
	}
	require.NoError(t, inst.Uninstall(ctx, env, "site", siteNS))
	delete(installed, "site")
	requireNoLeftovers(t, ctx, siteNS)
	runPod(t, ctx, appNS, "top-after-child", topHost+hello, "connected-registry-pull", "")

	// A second child fills its cache through the top release; then the top release goes: the child still serves
	// its cache, and the top release's pull Secret is gone from the application namespace.
	site2, err := env.PrepareBYOCSiteAt(ctx, site2NS, "site2", child2ClusterIP, true)
	require.NoError(t, err)
	t.Cleanup(site2.Cleanup)
	createSecret(t, ctx, site2NS, "top-token", map[string]string{"username": "site", "password": "site-pw"})
	child2Values := writeValues(t, site2NS, map[string]any{
		"registry": map[string]any{"parent": map[string]any{"url": "https://" + topHost, "credentialsSecret": "top-token"}}})
	require.NoError(t, inst.Install(ctx, env, "site2", site2NS, []string{site2.ValuesFile, child2Values}))
	installed["site2"] = site2NS
	runPod(t, ctx, site2NS, "through-child2", child2Host+hello, "", "")
	for _, name := range []string{"parent-credentials", "client-tokens", "node-token"} {
		require.NoError(t, env.Client.CoreV1().Secrets(topNS).Delete(ctx, name, metav1.DeleteOptions{}))
	}
	require.NoError(t, inst.Uninstall(ctx, env, "top", topNS))
	delete(installed, "top")
	requireNoLeftovers(t, ctx, topNS)
	_, err = env.Client.CoreV1().Secrets(appNS).Get(ctx, "connected-registry-pull", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "the uninstall deletes the pull Secret it wrote: %v", err)
	runPod(t, ctx, site2NS, "child2-alone", child2Host+hello, "", "")
	require.NoError(t, env.StartParentAgain(ctx))
	parentUp = true

	for _, name := range []string{"parent-credentials", "top-token"} {
		require.NoError(t, env.Client.CoreV1().Secrets(site2NS).Delete(ctx, name, metav1.DeleteOptions{}))
	}
	require.NoError(t, inst.Uninstall(ctx, env, "site2", site2NS))
	delete(installed, "site2")
	requireNoLeftovers(t, ctx, site2NS)
}

// requireNoLeftovers waits up to a minute for the namespace to hold nothing of an uninstalled release.
func requireNoLeftovers(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(time.Minute); ; {
		var err error
		left, err = env.Leftovers(ctx, ns)
		require.NoError(t, err)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	require.Empty(t, left, "helm uninstall left objects behind in %s", ns)
}

func createSecret(t *testing.T, ctx context.Context, ns, name string, data map[string]string) {
	t.Helper()
	_, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// writeValues writes a values file of the run, removed when the test ends.
func writeValues(t *testing.T, ns string, values map[string]any) string {
	t.Helper()
	b, err := json.Marshal(values)
	require.NoError(t, err)
	f := filepath.Join(env.State, ns+"-nested.json")
	require.NoError(t, os.WriteFile(f, b, 0o600))
	t.Cleanup(func() { _ = os.Remove(f) })
	return f
}

func waitSecret(t *testing.T, ctx context.Context, ns, name string) *corev1.Secret {
	t.Helper()
	progress := env.Progress("Secret " + ns + "/" + name)
	deadline := time.Now().Add(time.Minute)
	for {
		s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			require.Equal(t, corev1.SecretTypeDockerConfigJson, s.Type)
			return s
		}
		require.False(t, time.Now().After(deadline), "no Secret %s/%s after a minute: %v", ns, name, err)
		progress.Say(err.Error())
		time.Sleep(time.Second)
	}
}

// runPod runs image in a pod (pulled always, with the pull Secret if given) to completion, checks its output and,
// if given, the digest it ran, and deletes it.
func runPod(t *testing.T, ctx context.Context, ns, name, image, pullSecret, digest string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "hello", Image: image, ImagePullPolicy: corev1.PullAlways}},
		},
	}
	if pullSecret != "" {
		pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: pullSecret}}
	}
	start := time.Now()
	_, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	defer func() {
		_ = env.Client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	}()
	done, err := env.WaitPodDone(ctx, ns, name, 2*time.Minute)
	require.NoError(t, err, "pod %s/%s pulling %s", ns, name, image)
	if digest != "" {
		require.True(t, strings.HasSuffix(done.Status.ContainerStatuses[0].ImageID, "@"+digest),
			"pod %s ran %s, want %s", name, done.Status.ContainerStatuses[0].ImageID, digest)
	}
	logs, err := env.Client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	require.NoError(t, err)
	require.Contains(t, string(logs), "hello from")
	t.Logf("pod %s/%s pulled %s and ran in %s", ns, name, image, time.Since(start).Round(100*time.Millisecond))
}

// failedPullEvents starts a pod without credentials and returns the messages of its Failed events once one
// names the pull's failure.
func failedPullEvents(t *testing.T, ctx context.Context, ns, name, image string) string {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "hello", Image: image, ImagePullPolicy: corev1.PullAlways}},
		},
	}
	_, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	defer func() {
		_ = env.Client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	}()
	progress := env.Progress(fmt.Sprintf("a failed pull of %s in pod %s/%s", image, ns, name))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		events, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + name + ",reason=Failed"})
		require.NoError(t, err)
		var msgs []string
		for _, e := range events.Items {
			msgs = append(msgs, e.Message)
		}
		if len(msgs) > 0 {
			return strings.Join(msgs, " | ")
		}
		require.False(t, time.Now().After(deadline), "pod %s/%s has no Failed event after 2m", ns, name)
		progress.Say("no Failed event yet")
		time.Sleep(time.Second)
	}
}
