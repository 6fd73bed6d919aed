package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/evict"
	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// cacheRepository is the parent's repository of the bounded-cache test's images.
const cacheRepository = "testdata/cache"

// volumeBlobBytes sums the blob data files of the registry's filesystem storage on the site's volume.
func volumeBlobBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	root := filepath.Join(dir, "docker", "registry", "v2", "blobs")
	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "data" {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	}))
	return n
}

func volumeHasBlob(dir, digest string) bool {
	hex := strings.TrimPrefix(digest, "sha256:")
	_, err := os.Stat(filepath.Join(dir, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data"))
	return err == nil
}

// TestBoundedCacheEviction installs the chart with registry.cache.maxSize far below what the site pulls and a
// pre-sync of one image, and runs the eviction CronJob's pod (a Job from its template) on the real cluster:
//   - the node pulls two more images; the parent gate records the pulls from the registry's notifications;
//   - the eviction evicts both, keeps the pre-synced one, and the blobs on the volume shrink by their own
//     layers, while the base layers the three images share stay;
//   - a pod pulls an evicted image again: the registry fetches its own layer from the parent, not the shared ones.
func TestBoundedCacheEviction(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	inst := framework.CLIInstaller("helm3")
	ns, release := "cr-e2e-cache", "cr"
	digests := map[string]string{}
	for _, tag := range []string{"synced", "old", "new"} {
		digests[tag] = pushUnpulledImage(t, ctx, cacheRepository+":"+tag).String()
	}

	site, err := env.PrepareBYOCSite(ctx, ns, release, true)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
			_ = inst.Uninstall(context.Background(), env, release, ns)
		}
	})
	// Flat keys, as the Azure extension's settings give them.
	values, err := json.Marshal(map[string]any{
		"registry.cache.maxSize":  "1Ki",
		"registry.cache.schedule": "0 0 1 1 *", // the test runs the eviction itself
		"sync.enabled":            true,
		"sync.schedule":           "* * * * *",
		"sync": map[string]any{"repositories": []any{
			map[string]any{"name": cacheRepository, "tags": []any{"synced"}},
		}},
		// The gate writes the pull records every 2 s rather than every minute.
		"extraEnv": []any{map[string]any{"name": "CONNECTED_REGISTRY_GATE_PULLS_FLUSH", "value": "2s"}},
	})
	require.NoError(t, err)
	valuesFile := filepath.Join(env.State, ns+"-cache.json")
	require.NoError(t, os.WriteFile(valuesFile, values, 0o600))
	t.Cleanup(func() { _ = os.Remove(valuesFile) })
	require.NoError(t, inst.Install(ctx, env, release, ns, []string{site.ValuesFile, valuesFile}))
	waitSynced(t, ctx, ns, release+"-connected-registry-sync-status", cacheRepository, "synced", 3*time.Minute)

	// The node pulls old, then new.
	for _, tag := range []string{"old", "new"} {
		pullOnNode(t, ctx, ns, "pull-"+tag, framework.RegistryHost+"/"+cacheRepository+":"+tag)
	}
	pulls := waitPullRecords(t, ctx, ns, release+"-connected-registry-cache-pulls",
		[]string{cacheRepository + ":old", cacheRepository + ":new"}, time.Minute)
	t.Logf("pull records: %v", pulls.Last)

	dir := env.VolumeDir(ns + "-data")
	before := volumeBlobBytes(t, dir)
	start := time.Now()
	runCronJobOnce(t, ctx, ns, release+"-connected-registry-cache-evict", 5*time.Minute)
	t.Logf("the eviction Job completed in %s", time.Since(start).Round(100*time.Millisecond))
	after := volumeBlobBytes(t, dir)
	t.Logf("blobs on the volume: %d bytes before the eviction, %d after", before, after)

	cm, err := env.Client.CoreV1().ConfigMaps(ns).Get(ctx, release+"-connected-registry-cache-status", metav1.GetOptions{})
	require.NoError(t, err)
	t.Logf("status: %s", cm.Data[evict.SummaryKey])
	var st evict.Status
	require.NoError(t, json.Unmarshal([]byte(cm.Data[evict.StatusKey]), &st))
	var evicted []string
	for _, img := range st.Evicted {
		evicted = append(evicted, img.Repository+":"+strings.Join(img.Tags, ","))
	}
	require.ElementsMatch(t, []string{cacheRepository + ":old", cacheRepository + ":new"}, evicted,
		"the eviction takes what the node pulled and keeps what pre-sync holds")
	require.Equal(t, 1, st.Kept)
	require.NotZero(t, st.After)
	require.Less(t, after, before, "the eviction frees space on the volume")

	// The layers the pre-synced image shares with the evicted ones stay; their own random layers go.
	admin := &authn.Basic{Username: env.Parent.Admin.Name, Password: env.Parent.Admin.Password}
	own := map[string][]string{}
	for _, tag := range []string{"synced", "old"} {
		ref, err := name.ParseReference(env.Parent.Host + "/" + cacheRepository + ":" + tag)
		require.NoError(t, err)
		idx, err := remote.Index(ref, env.Parent.RemoteOptions(ctx, admin)...)
		require.NoError(t, err)
		im, err := idx.IndexManifest()
		require.NoError(t, err)
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			require.NoError(t, err)
			layers, err := img.Layers()
			require.NoError(t, err)
			for i, l := range layers {
				d, err := l.Digest()
				require.NoError(t, err)
				if i == len(layers)-1 {
					own[tag] = append(own[tag], d.String())
				} else if tag == "synced" && volumeHasBlob(dir, d.String()) {
					own["shared"] = append(own["shared"], d.String())
				}
			}
		}
	}
	require.NotEmpty(t, own["shared"], "the pre-synced image's base layers are on the volume")
	for _, d := range own["old"] {
		require.False(t, volumeHasBlob(dir, d), "the evicted image's own layer %s is still on the volume", d)
	}

	// The evicted image is pulled again, through the Service (the node's containerd may keep the layers it had):
	// the registry fetches its own layers from the parent, and no shared one.
	mark := env.Parent.Log()
	ref, err := name.ParseReference(framework.RegistryHost + "/" + cacheRepository + ":old")
	require.NoError(t, err)
	idx, err := remote.Index(ref, remote.WithTransport(env.CA.Transport()), remote.WithContext(ctx))
	require.NoError(t, err)
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		require.NoError(t, err)
		layers, err := img.Layers()
		require.NoError(t, err)
		for _, l := range layers {
			rc, err := l.Compressed()
			require.NoError(t, err)
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			require.NoError(t, err, "reading a layer of the evicted image again")
		}
	}
	var fetched map[string]int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		fetched = env.Parent.Log().Since(mark).BlobFetches()
		if n := countOf(fetched, own["old"]); n > 0 {
			break
		}
	}
	require.Positive(t, countOf(fetched, own["old"]), "the evicted image's layer came again from the parent: %v", fetched)
	require.Zero(t, countOf(fetched, own["shared"]), "no shared layer came again from the parent: %v", fetched)

	require.NoError(t, env.Client.CoreV1().Secrets(ns).Delete(ctx, "parent-credentials", metav1.DeleteOptions{}))
	require.NoError(t, inst.Uninstall(ctx, env, release, ns))
}

func countOf(fetched map[string]int, digests []string) int {
	n := 0
	for _, d := range digests {
		n += fetched[d]
	}
	return n
}

// pullOnNode runs a pod of image (pulled always) to completion and deletes it.
func pullOnNode(t *testing.T, ctx context.Context, ns, podName, image string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "hello", Image: image, ImagePullPolicy: corev1.PullAlways}},
		},
	}
	_, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = env.WaitPodDone(ctx, ns, podName, 2*time.Minute)
	require.NoError(t, err, "pulling %s on the node", image)
	require.NoError(t, env.Client.CoreV1().Pods(ns).Delete(ctx, podName, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
}

// waitPullRecords waits until the pull records ConfigMap holds every ref.
func waitPullRecords(t *testing.T, ctx context.Context, ns, configMap string, refs []string, timeout time.Duration) *evict.Pulls {
	t.Helper()
	progress := env.Progress("the pull records in " + configMap)
	deadline := time.Now().Add(timeout)
	for {
		cm, err := env.Client.CoreV1().ConfigMaps(ns).Get(ctx, configMap, metav1.GetOptions{})
		require.NoError(t, err)
		var p evict.Pulls
		if s := cm.Data[evict.PullsKey]; s != "" {
			require.NoError(t, json.Unmarshal([]byte(s), &p))
		}
		var missing []string
		for _, ref := range refs {
			if _, ok := p.Last[ref]; !ok {
				missing = append(missing, ref)
			}
		}
		if len(missing) == 0 {
			return &p
		}
		if time.Now().After(deadline) {
			require.Failf(t, "no pull records", "%s lacks %v after %s: %v", configMap, missing, timeout, p.Last)
		}
		progress.Say(fmt.Sprintf("missing %v", missing))
		time.Sleep(time.Second)
	}
}

// runCronJobOnce creates a Job from the CronJob's template, as kubectl create job --from=cronjob does, and waits
// for it to succeed; it deletes the Job afterwards.
func runCronJobOnce(t *testing.T, ctx context.Context, ns, cronJob string, timeout time.Duration) {
	t.Helper()
	cj, err := env.Client.BatchV1().CronJobs(ns).Get(ctx, cronJob, metav1.GetOptions{})
	require.NoError(t, err)
	// Owned by the CronJob, as kubectl create job --from=cronjob makes it: uninstall then deletes it with the
	// CronJob, and its pod lets go of the cache's claim.
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: cronJob + "-manual", Namespace: ns, Labels: cj.Spec.JobTemplate.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, batchv1.SchemeGroupVersion.WithKind("CronJob"))}},
		Spec: cj.Spec.JobTemplate.Spec,
	}
	_, err = env.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		bg := metav1.DeletePropagationBackground
		_ = env.Client.BatchV1().Jobs(ns).Delete(context.Background(), job.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
	})
	progress := env.Progress("the Job " + job.Name)
	deadline := time.Now().Add(timeout)
	for {
		j, err := env.Client.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		require.NoError(t, err)
		if j.Status.Succeeded > 0 {
			return
		}
		if j.Status.Failed > 0 || time.Now().After(deadline) {
			out, _ := env.Combined(ctx, "kubectl", "-n", ns, "logs", "job/"+job.Name, "--all-containers", "--prefix")
			require.Failf(t, "the eviction Job did not succeed", "failed %d, active %d:\n%s", j.Status.Failed, j.Status.Active, out)
		}
		progress.Say(fmt.Sprintf("active %d", j.Status.Active))
		time.Sleep(2 * time.Second)
	}
}
