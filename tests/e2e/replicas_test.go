package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/parentgate"
	"github.com/connected-registry/connected-registry/internal/testing/acrparent"
	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// replicasRepository is the parent's repository of the replica test's images.
const replicasRepository = "testdata/replicas"

// Sizes of the replica test's images: a small random layer and a large one, on top of the hello image.
const (
	replicasSmallLayer = 256 << 10
	replicasLargeLayer = 48 << 20
)

// peerPort is the parent gate's peer port the chart renders (cr.replicas.peerPort).
const peerPort = "5129"

// TestReplicasOnObjectStorage installs three replicas whose cache is an Azure Blob container (Azurite on the
// cluster bridge), against the ACR-like parent (bearer tokens that expire, blobs redirected to a storage host):
//  1. pods on the node and clients on the host pull one cold image through the Service at once;
//  2. the parent sends each of its blobs exactly once: 1.0x the image;
//  3. the replica that owns the large layer of a second cold image is deleted (grace 0) while that image is
//     being pulled: every pod still runs, retries allowed;
//  4. with the parent stopped, each replica serves both images from the shared cache, asked on its pod IP, and
//     the node pulls once more.
func TestReplicasOnObjectStorage(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	began := time.Now()
	inst := framework.CLIInstaller("helm3")
	ns, release := "cr-e2e-replicas", "cr"
	const replicas, podPulls, hostPulls = 3, 4, 6

	store, err := env.StartAzurite(ctx)
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	coldRef, killRef := replicasRepository+":cold", replicasRepository+":kill"
	cold, err := env.PushLargeImage(ctx, coldRef, replicasSmallLayer, replicasLargeLayer)
	require.NoError(t, err)
	kill, err := env.PushLargeImage(ctx, killRef, replicasSmallLayer, replicasLargeLayer)
	require.NoError(t, err)
	t.Logf("Azurite at %s, two images pushed to the parent in %s", store.Endpoint, time.Since(began).Round(100*time.Millisecond))

	site, err := env.PrepareBYOCSite(ctx, ns, release, true)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
			_ = inst.Uninstall(context.Background(), env, release, ns)
		}
	})
	// The gates find each other by the headless Service's name; the test cluster has no DNS of its own.
	dns, err := env.StartClusterDNS()
	require.NoError(t, err)
	t.Cleanup(dns.Stop)
	storageValues, err := env.ObjectStorageValues(ctx, ns, store, "replicas", replicas, dns.Values(ns))
	require.NoError(t, err)
	step := time.Now()
	require.NoError(t, inst.Install(ctx, env, release, ns, []string{site.ValuesFile, storageValues}))
	pods, err := env.WaitRegistryPods(ctx, ns, release, replicas, 2*time.Minute)
	require.NoError(t, err)
	t.Logf("installed %d replicas on the container in %s", replicas, time.Since(step).Round(100*time.Millisecond))
	peersName := release + "-connected-registry-peers." + ns + ".svc"
	var podIPs []string
	for _, p := range pods {
		podIPs = append(podIPs, p.Status.PodIP)
	}
	require.Eventually(t, func() bool {
		got, err := dns.Resolver().LookupHost(ctx, peersName)
		return err == nil && assert.ElementsMatch(noT{}, podIPs, got)
	}, time.Minute, time.Second, "%s should resolve to the ready replicas %v", peersName, podIPs)

	// 1 and 2: a concurrent cold pull costs the parent each blob once.
	blobs, err := framework.Blobs(cold)
	require.NoError(t, err)
	mark := env.Parent.Log()
	step = time.Now()
	retries := concurrentPulls(t, ctx, ns, "cold", coldRef, podPulls, hostPulls)
	t.Logf("concurrent cold pull of %s (%d pods, %d host clients): %s, %d host retries", coldRef, podPulls, hostPulls,
		time.Since(step).Round(100*time.Millisecond), retries)
	got := env.Parent.Log().Since(mark)
	imageBytes, parentBytes := parentCost(t, got, blobs)
	t.Logf("parent sent %d bytes for an image of %d bytes of blobs: %.2fx", parentBytes, imageBytes, float64(parentBytes)/float64(imageBytes))
	for d := range blobs {
		require.Equal(t, 1, got.BlobFetches()[d], "blob %s fetched from the parent once across the replicas\n%s", d, got)
	}
	require.Equal(t, len(blobs), got.BlobGets(), "no other blob fetched\n%s", got)
	require.Equal(t, imageBytes, parentBytes, "the parent's bytes are 1.0x the image")
	require.Zero(t, got.StorageAuthorizations(), "no credentials sent to the storage host")

	// 3: the owner of the large layer is deleted while the image is being pulled. The hello image's layer is
	// cached already: the parent's cost is that of the blobs the cold image does not share.
	coldBlobs := blobs
	blobs, err = framework.Blobs(kill)
	require.NoError(t, err)
	for d := range coldBlobs {
		delete(blobs, d)
	}
	large := largestBlob(blobs)
	members := make([]string, 0, len(pods))
	byMember := map[string]string{}
	for _, p := range pods {
		m := net.JoinHostPort(p.Status.PodIP, peerPort)
		members = append(members, m)
		byMember[m] = p.Name
	}
	owner := (&parentgate.Peers{Self: members[0], Refresh: time.Hour,
		Lookup: func(context.Context) ([]string, error) { return members, nil }}).Owner(ctx, large, time.Now())
	victim := byMember[owner]
	mark = env.Parent.Log()
	step = time.Now()
	killed := make(chan time.Duration, 1)
	go func() {
		// The owner's gate asks the parent for the layer: the pulls are under way.
		path := "/v2/" + replicasRepository + "/blobs/" + large
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			for _, a := range env.Parent.Log().Since(mark).API {
				if a.Method == http.MethodGet && a.Path == path {
					_ = env.Client.CoreV1().Pods(ns).Delete(context.Background(), victim, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
					killed <- time.Since(step)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		close(killed)
	}()
	retries = concurrentPulls(t, ctx, ns, "kill", killRef, podPulls, hostPulls)
	at, ok := <-killed
	require.True(t, ok, "the parent was never asked for the large layer %s", large)
	took := time.Since(step)
	got = env.Parent.Log().Since(mark)
	failures, msgs, err := env.PullFailures(ctx, ns, "kill-")
	require.NoError(t, err)
	imageBytes, parentBytes = parentCost(t, got, blobs)
	t.Logf("replica %s (%s, owner of %s) deleted %s into the pull; the pull took %s; node pull failures retried: %d %q; host retries: %d",
		victim, owner, large, at.Round(100*time.Millisecond), took.Round(100*time.Millisecond), failures, msgs, retries)
	t.Logf("with a replica killed the parent sent %d bytes for %d bytes of new blobs: %.2fx; fetches per blob: %v",
		parentBytes, imageBytes, float64(parentBytes)/float64(imageBytes), got.BlobFetches())
	for d := range blobs {
		require.GreaterOrEqual(t, got.BlobFetches()[d], 1, "blob %s fetched\n%s", d, got)
	}
	for _, m := range msgs {
		// A replica whose owner went away mid-blob sends the rest from elsewhere: no client ever gets bytes that
		// are not the blob's (Distribution's error after a broken blob, kept by a resuming containerd).
		require.NotContains(t, m, "unexpected commit digest", "a node pull got other bytes than the blob's")
	}

	// 4: with the parent stopped, every replica serves the cache.
	pods, err = env.WaitRegistryPods(ctx, ns, release, replicas, 2*time.Minute)
	require.NoError(t, err)
	env.StopParent()
	t.Cleanup(func() { require.NoError(t, env.StartParentAgain(context.Background())) })
	step = time.Now()
	for _, p := range pods {
		for ref, img := range map[string]v1.Image{coldRef: cold, killRef: kill} {
			want, err := framework.Blobs(img)
			require.NoError(t, err)
			got, err := framework.PullAll(ctx, env.RegistryTransport(p.Status.PodIP), framework.RegistryHost+"/"+ref)
			require.NoError(t, err, "replica %s (%s) serves %s with the parent down", p.Name, p.Status.PodIP, ref)
			require.Equal(t, want, got, "replica %s serves every blob of %s whole", p.Name, ref)
		}
	}
	t.Logf("parent down: %d replicas each served both images on their pod IPs in %s", len(pods), time.Since(step).Round(100*time.Millisecond))
	step = time.Now()
	require.NoError(t, env.ForgetNodeImages(ctx, framework.RegistryHost+"/"+coldRef))
	pullOnNode(t, ctx, ns, "offline", framework.RegistryHost+"/"+coldRef)
	t.Logf("parent down: the node pulled %s again in %s; whole test %s", coldRef, time.Since(step).Round(100*time.Millisecond), time.Since(began).Round(time.Second))
}

// concurrentPulls pulls ref through the registry's Service at once from pods pods on the node (named prefix-i)
// and clients clients on the host, each host client on connections of its own, retrying a failed pull; it
// requires every pod to complete and every client to get the image whole, and returns the host clients' retries.
func concurrentPulls(t *testing.T, ctx context.Context, ns, prefix, ref string, pods, clients int) int {
	t.Helper()
	image := framework.RegistryHost + "/" + ref
	for i := range pods {
		require.NoError(t, env.StartPullPod(ctx, ns, fmt.Sprintf("%s-%d", prefix, i), image))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	retries := 0
	errs := make([]error, clients)
	for i := range clients {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				_, err := framework.PullAll(ctx, env.RegistryTransport(""), image)
				if err == nil || attempt == 5 {
					errs[i] = err
					return
				}
				mu.Lock()
				retries++
				mu.Unlock()
				t.Logf("host client %d: %v; retrying", i, err)
				time.Sleep(2 * time.Second)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "host client %d", i)
	}
	for i := range pods {
		pod, err := env.WaitPodDone(ctx, ns, fmt.Sprintf("%s-%d", prefix, i), 4*time.Minute)
		require.NoError(t, err)
		require.Equal(t, corev1.PodSucceeded, pod.Status.Phase)
	}
	return retries
}

// parentCost returns the bytes of blobs and the body bytes the parent's storage host sent for them.
func parentCost(t *testing.T, l acrparent.Log, blobs map[string]int64) (image, sent int64) {
	t.Helper()
	for _, size := range blobs {
		image += size
	}
	for _, s := range l.Storage {
		if _, ok := blobs[s.Digest]; ok && s.Method == http.MethodGet {
			sent += s.Bytes
		}
	}
	return image, sent
}

// largestBlob is the digest of the largest of blobs.
func largestBlob(blobs map[string]int64) string {
	var best string
	for d, size := range blobs {
		if best == "" || size > blobs[best] || (size == blobs[best] && strings.Compare(d, best) < 0) {
			best = d
		}
	}
	return best
}

// noT lets assert's comparisons report nothing, inside a condition that is retried.
type noT struct{}

func (noT) Errorf(string, ...any) {}
