package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/presync"
	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// presyncRepository is the parent's repository of the images the pre-sync test makes: the hello image with a
// random layer added to each platform, so that no node has pulled any of it.
const presyncRepository = "testdata/presync"

// TestPreSync installs the chart with the scheduled pre-sync on, with the helm v3 and v4 CLIs in turn: the sync
// CronJob's first scheduled run makes the registry hold an image that no node has pulled, as its status
// ConfigMap says; then, with the parent down, a pod pulls that image through the registry and runs. helm
// uninstall leaves nothing behind (CronJob, Jobs and their pods, the status ConfigMap, the RBAC).
func TestPreSync(t *testing.T) {
	requireEnv(t)
	for _, bin := range []string{"helm3", "helm4"} {
		t.Run(bin, func(t *testing.T) {
			preSync(t, context.Background(), framework.CLIInstaller(bin))
		})
	}
}

func preSync(t *testing.T, ctx context.Context, inst framework.Installer) {
	ns, release := "cr-e2e-sync-"+inst.Name(), "cr"
	tag := inst.Name()
	digest := pushUnpulledImage(t, ctx, presyncRepository+":"+tag)

	site, err := env.PrepareBYOCSite(ctx, ns, release, true)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
			_ = inst.Uninstall(context.Background(), env, release, ns)
		}
	})
	// Flat keys, as the Azure extension's settings give them, beside a nested list.
	syncValues, err := json.Marshal(map[string]any{
		"sync.enabled":  true,
		"sync.schedule": "* * * * *",
		"sync": map[string]any{"repositories": []any{
			map[string]any{"name": presyncRepository, "tags": []any{tag}},
		}},
	})
	require.NoError(t, err)
	syncFile := filepath.Join(env.State, ns+"-sync.json")
	require.NoError(t, os.WriteFile(syncFile, syncValues, 0o600))
	t.Cleanup(func() { _ = os.Remove(syncFile) })

	start := time.Now()
	require.NoError(t, inst.Install(ctx, env, release, ns, []string{site.ValuesFile, syncFile}))
	t.Logf("%s: installed and Ready in %s", inst.Name(), time.Since(start).Round(100*time.Millisecond))
	cronJob, err := env.Client.BatchV1().CronJobs(ns).Get(ctx, release+"-connected-registry-sync", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "* * * * *", cronJob.Spec.Schedule)

	// The first scheduled run (within a minute) syncs the image: the status ConfigMap says so.
	st := waitSynced(t, ctx, ns, release+"-connected-registry-sync-status", presyncRepository, tag, 3*time.Minute)
	require.Equal(t, digest.String(), st.Tags[tag].Digest, "the status names the digest the parent holds")
	t.Logf("%s: synced %s:%s (%d bytes) %s after the install", inst.Name(), presyncRepository, tag, st.Tags[tag].Size,
		time.Since(start).Round(time.Second))

	// The site is cut off: the node pulls the image, which it never pulled before, from the registry alone.
	env.StopParent()
	parentUp := false
	t.Cleanup(func() {
		if !parentUp {
			require.NoError(t, env.StartParentAgain(context.Background()))
		}
	})
	image := framework.RegistryHost + "/" + presyncRepository + ":" + tag
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "presynced", Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "hello", Image: image, ImagePullPolicy: corev1.PullAlways}},
		},
	}
	_, err = env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	done, err := env.WaitPodDone(ctx, ns, pod.Name, 2*time.Minute)
	require.NoError(t, err, "with the parent down, a pod pulls the pre-synced image")
	require.True(t, strings.HasSuffix(done.Status.ContainerStatuses[0].ImageID, "@"+digest.String()),
		"the pod ran %s, want the synced digest %s", done.Status.ContainerStatuses[0].ImageID, digest)
	logs, err := env.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	require.NoError(t, err)
	require.Contains(t, string(logs), "hello from")
	require.NoError(t, env.Client.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	require.NoError(t, env.StartParentAgain(ctx))
	parentUp = true

	// Everything the chart made is gone after uninstall, the CronJob's Jobs and pods included (the garbage
	// collector deletes them after their CronJob).
	require.NoError(t, env.Client.CoreV1().Secrets(ns).Delete(ctx, "parent-credentials", metav1.DeleteOptions{}))
	require.NoError(t, inst.Uninstall(ctx, env, release, ns))
	var left []string
	for deadline := time.Now().Add(time.Minute); ; {
		left, err = env.Leftovers(ctx, ns)
		require.NoError(t, err)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	require.Empty(t, left, "helm uninstall left objects behind")
}

// pushUnpulledImage pushes to the parent, at repoTag, the hello image's index with a random layer added to each
// platform's image, and returns the index's digest.
func pushUnpulledImage(t *testing.T, ctx context.Context, repoTag string) v1.Hash {
	t.Helper()
	admin := &authn.Basic{Username: env.Parent.Admin.Name, Password: env.Parent.Admin.Password}
	ref, err := name.ParseReference(env.Parent.Host + "/" + framework.HelloImage)
	require.NoError(t, err)
	hello, err := remote.Index(ref, env.Parent.RemoteOptions(ctx, admin)...)
	require.NoError(t, err)
	mt, err := hello.MediaType()
	require.NoError(t, err)
	im, err := hello.IndexManifest()
	require.NoError(t, err)
	layerType := types.OCILayer
	if mt == types.DockerManifestList {
		layerType = types.DockerLayer
	}
	idx := mutate.IndexMediaType(empty.Index, mt)
	for _, desc := range im.Manifests {
		img, err := hello.Image(desc.Digest)
		require.NoError(t, err)
		layer, err := random.Layer(64<<10, layerType)
		require.NoError(t, err)
		img, err = mutate.AppendLayers(img, layer)
		require.NoError(t, err)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: desc.Platform}})
	}
	require.NoError(t, env.Parent.Push(ctx, repoTag, idx))
	digest, err := idx.Digest()
	require.NoError(t, err)
	return digest
}

// waitSynced waits until the sync status ConfigMap names tag of repo as synced, and returns the repository's
// status.
func waitSynced(t *testing.T, ctx context.Context, ns, configMap, repo, tag string, timeout time.Duration) *presync.RepositoryStatus {
	t.Helper()
	progress := env.Progress(fmt.Sprintf("the sync of %s:%s (ConfigMap %s)", repo, tag, configMap))
	deadline := time.Now().Add(timeout)
	for {
		cm, err := env.Client.CoreV1().ConfigMaps(ns).Get(ctx, configMap, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			require.Fail(t, "the status ConfigMap is missing", configMap)
		case err != nil:
			progress.Say(err.Error())
		case cm.Data[presync.StatusKey] == "":
			progress.Say("no run has written the status yet")
		default:
			var st presync.Status
			require.NoError(t, json.Unmarshal([]byte(cm.Data[presync.StatusKey]), &st))
			for _, r := range st.Repositories {
				if r.Name != repo {
					continue
				}
				if _, ok := r.Tags[tag]; ok {
					t.Logf("status summary:\n%s", cm.Data[presync.SummaryKey])
					return r
				}
				progress.Say(fmt.Sprintf("run %s: %s; %s failed %v, pending %v, error %q", st.Run.Result, st.Run.Message, repo, r.Failed, r.Pending, r.Error))
			}
		}
		if time.Now().After(deadline) {
			require.Failf(t, "no sync in time", "%s:%s not synced after %s", repo, tag, timeout)
		}
		time.Sleep(2 * time.Second)
	}
}
