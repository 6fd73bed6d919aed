package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"

	"github.com/connected-registry/connected-registry/internal/presync"
	"github.com/connected-registry/connected-registry/internal/testing/acrparent"
	"github.com/connected-registry/connected-registry/internal/testing/apistub"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

const (
	syncNamespace = "connected-registry"
	syncCronJob   = "cr-connected-registry-sync"
	syncStatusCM  = "cr-connected-registry-sync-status"
)

// TestSync runs the sync runner as the chart's sync CronJob runs it (the product binary with the CronJob's
// args, the Service's address and the mounted CA moved to the test's, the status ConfigMap on a stand-in API
// server) against the chart's registry pod and the ACR-like parent:
//   - the selected tags and platforms land in the cache, each blob crossing from the parent's storage host once,
//     and the other platforms do not; missing repositories and tags and a repository outside the sync token's
//     scope are named in the status and an Event, while the others are synced;
//   - a second run of the unchanged set fetches no blob and little else from the parent;
//   - a tag moved at the parent is synced at its new digest by the next run;
//   - a window too short stops the run cleanly, and the next run finishes without fetching any blob twice;
//   - with the parent down, a run fails naming it, keeps the digests synced, and the registry serves them.
func TestSync(t *testing.T) {
	t.Parallel()
	registryBin := registryBinary(t)
	productBin := productBinary(t)
	ca := newTestCA(t)
	ctx := context.Background()
	par, err := acrparent.Start(ctx, acrparent.Options{Bin: registryBin, Dir: t.TempDir(), CA: ca.CA,
		SyncToken: acrparent.Account{Repositories: []string{"sync/app", "sync/other", "sync/big", "sync/missing"}}})
	must(t, err)
	t.Cleanup(par.Stop)

	// The parent's content.
	appV1, appV2 := newMultiArch(t), newMultiArch(t)
	must(t, par.Push(ctx, "sync/app:v1", appV1.index))
	must(t, par.Push(ctx, "sync/app:v2", appV2.index))
	must(t, par.Push(ctx, "sync/app:v3", newMultiArchOf(t, 1<<10).index)) // not selected
	other := map[string]*multiArch{}
	for _, tag := range []string{"1.0.0", "1.1.0", "2.0.0-rc1", "2.0.0", "latest"} {
		other[tag] = newMultiArchOf(t, 4<<10)
		must(t, par.Push(ctx, "sync/other:"+tag, other[tag].index))
	}
	must(t, par.Push(ctx, "sync/forbidden:v1", newMultiArchOf(t, 1<<10).index))

	sc := scenario{name: "sync", values: func(string) ([]string, map[string]any, map[string]map[string]string) {
		return nil, map[string]any{"connectionString": par.ConnectionString("cr")}, nil
	}}
	pd, _ := startConnectedRegistry(t, sc, par.Host, registryBin, productBin, ca)
	crHost := "127.0.0.1:" + strconv.Itoa(pd.Port)
	api := apistub.Start()
	t.Cleanup(api.Close)
	env := newSyncEnv(t, api, ca, crHost, productBin)

	repos := []any{
		map[string]any{"name": "sync/app", "tags": []any{"v1", "v2", "nope"}},
		map[string]any{"name": "sync/other", "semver": ">=1.1", "platforms": []any{"linux/arm64"}},
		map[string]any{"name": "sync/forbidden", "tags": []any{"v1"}},
		map[string]any{"name": "sync/missing", "latest": 1},
	}
	args := env.cronJobArgs(t, par, map[string]any{"repositories": repos})
	api.PutConfigMap(env.statusConfigMap)

	// 1. The first run syncs what it can and names the rest.
	mark := par.Log()
	code, out := env.run(t, args)
	first := par.Log().Since(mark)
	if code != 0 {
		t.Fatalf("the first sync exited %d, want 0 (some repositories synced):\n%s", code, out)
	}
	st := env.status(t)
	t.Logf("after the first run:\n%s", st.Summary())
	if st.Run.Result != presync.ResultIncomplete || st.Run.TagsSynced != 4 || st.Run.TagsFailed != 1 {
		t.Errorf("the first run's result is %s with %d tags synced and %d failed, want incomplete, 4 and 1: %s", st.Run.Result, st.Run.TagsSynced, st.Run.TagsFailed, st.Run.Message)
	}
	app := repoStatus(t, st, "sync/app")
	wantTags(t, app, map[string]v1.Hash{"v1": appV1.digest, "v2": appV2.digest})
	if app.Failed["nope"] != "not found at the parent" {
		t.Errorf("the status does not name the missing tag nope: %v", app.Failed)
	}
	otherStatus := repoStatus(t, st, "sync/other")
	wantTags(t, otherStatus, map[string]v1.Hash{"1.1.0": other["1.1.0"].digest, "2.0.0": other["2.0.0"].digest})
	if f := repoStatus(t, st, "sync/forbidden").Error; !strings.Contains(f, "the parent refuses the sync token access to it") {
		t.Errorf("the status of sync/forbidden, outside the sync token's scope, says %q", f)
	}
	if f := repoStatus(t, st, "sync/missing").Error; !strings.Contains(f, "not found at the parent") {
		t.Errorf("the status of sync/missing, which the parent lacks, says %q", f)
	}
	if st.NextRun == nil || st.NextRun.Sub(*st.Run.Finished) > time.Minute {
		t.Errorf("the next run is %v, want within a minute of the run's end (schedule * * * * *)", st.NextRun)
	}
	events := api.Events()
	if len(events) != 1 || events[0].Reason != presync.ReasonIncomplete || events[0].Type != corev1.EventTypeWarning ||
		events[0].InvolvedObject.Name != syncStatusCM || !strings.Contains(events[0].Message, "sync/forbidden") {
		t.Errorf("want one Warning Event SyncIncomplete about %s naming sync/forbidden, got %+v", syncStatusCM, events)
	}
	summary := api.ConfigMap(syncNamespace, syncStatusCM).Data[presync.SummaryKey]
	for _, want := range []string{"sync/app", "1 failed: nope (not found at the parent)", "sync/forbidden", "Next run:"} {
		if !strings.Contains(summary, want) {
			t.Errorf("the summary lacks %q:\n%s", want, summary)
		}
	}
	// Each selected blob came from the storage host once; the arm64-only repository's amd64 blobs not at all.
	fetches := first.BlobFetches()
	var wantBlobs []v1.Hash
	wantBlobs = append(wantBlobs, appV1.contentBlobs()...)
	wantBlobs = append(wantBlobs, appV2.contentBlobs()...)
	for _, tag := range []string{"1.1.0", "2.0.0"} {
		wantBlobs = append(wantBlobs, other[tag].platformBlobs("linux/arm64")...)
		for _, d := range other[tag].platformBlobs("linux/amd64") {
			if fetches[d.String()] != 0 {
				t.Errorf("sync/other:%s: blob %s of linux/amd64, which the sync does not select, was fetched", tag, d)
			}
		}
	}
	for _, d := range wantBlobs {
		if fetches[d.String()] != 1 {
			t.Errorf("the storage host sent blob %s %d times during the first run, want once", d, fetches[d.String()])
		}
	}
	if n := first.BlobGets(); n != len(wantBlobs) {
		t.Errorf("the first run fetched %d blobs from the storage host, want %d", n, len(wantBlobs))
	}
	waitBlobsStored(t, pd.HostPath["storage.filesystem.rootdirectory"], appV1)
	waitBlobsStored(t, pd.HostPath["storage.filesystem.rootdirectory"], appV2)

	// 2. A run of the unchanged set moves no blob and almost nothing from the parent.
	mark = par.Log()
	code, out = env.run(t, args)
	second := par.Log().Since(mark)
	st = env.status(t)
	if code != 0 || st.Run.TagsUnchanged != 4 || st.Run.TagsSynced != 0 || st.Run.BlobsFetched != 0 {
		t.Errorf("the second run exited %d with %d tags unchanged, %d synced and %d blobs fetched, want 0, 4, 0, 0:\n%s", code,
			st.Run.TagsUnchanged, st.Run.TagsSynced, st.Run.BlobsFetched, out)
	}
	var apiBytes int64
	for _, a := range second.API {
		apiBytes += a.Bytes
	}
	t.Logf("the unchanged re-sync: %d requests to the parent's API (%d bytes), %d to its storage host", len(second.API), apiBytes, len(second.Storage))
	if second.BlobGets() != 0 || apiBytes > 64<<10 {
		t.Errorf("the unchanged re-sync fetched %d blobs and %d bytes of API answers from the parent, want none and little:\n%s", second.BlobGets(), apiBytes, second)
	}
	if len(api.Events()) != 1 {
		t.Errorf("the second run, with the same problems, recorded another Event: %+v", api.Events()[1:])
	}

	// 3. A tag moved at the parent is synced at its new digest.
	appV2b := newMultiArch(t)
	must(t, par.Push(ctx, "sync/app:v2", appV2b.index))
	mark = par.Log()
	code, out = env.run(t, args)
	third := par.Log().Since(mark)
	st = env.status(t)
	if code != 0 || st.Run.TagsSynced != 1 || st.Run.TagsUnchanged != 3 {
		t.Errorf("after v2 moved, the run exited %d with %d tags synced and %d unchanged, want 0, 1 and 3:\n%s", code, st.Run.TagsSynced, st.Run.TagsUnchanged, out)
	}
	wantTags(t, repoStatus(t, st, "sync/app"), map[string]v1.Hash{"v1": appV1.digest, "v2": appV2b.digest})
	for _, d := range appV2b.contentBlobs() {
		if n := third.BlobFetches()[d.String()]; n != 1 {
			t.Errorf("the moved tag's blob %s was fetched %d times, want once", d, n)
		}
	}
	if n := third.BlobGets(); n != len(appV2b.contentBlobs()) {
		t.Errorf("syncing the moved tag fetched %d blobs, want only its %d new ones", n, len(appV2b.contentBlobs()))
	}

	// 4. A window too short: the run stops cleanly and the next one finishes, no blob crossing twice.
	big := newIndexOf(t, []string{"amd64"}, 512<<10, 512<<10, 512<<10, 512<<10, 512<<10, 512<<10, 512<<10, 512<<10)
	must(t, par.Push(ctx, "sync/big:1.0", big.index))
	bigRepos := append(slices.Clone(repos), map[string]any{"name": "sync/big", "latest": 1})
	windowed := env.cronJobArgs(t, par, map[string]any{"repositories": bigRepos, "window": "PT3S", "bandwidth": "1Mi", "concurrency": 2})
	mark = par.Log()
	began := time.Now()
	code, out = env.run(t, windowed)
	took := time.Since(began)
	st = env.status(t)
	t.Logf("the windowed run took %s:\n%s", took.Round(10*time.Millisecond), st.Summary())
	if code != 0 || st.Run.Result != presync.ResultWindowEnded || st.Run.TagsPending != 1 || len(repoStatus(t, st, "sync/big").Pending) != 1 {
		t.Errorf("the windowed run exited %d with result %s and %d tags pending, want 0, window-ended and 1:\n%s", code, st.Run.Result, st.Run.TagsPending, out)
	}
	if st.Run.BlobsFetched == 0 {
		t.Errorf("the windowed run fetched no blob: the window did not let it start")
	}
	if took > 6*time.Second {
		t.Errorf("the run with a window of 3s took %s", took)
	}
	if ev := api.Events(); ev[len(ev)-1].Reason != presync.ReasonWindowEnded {
		t.Errorf("the windowed run recorded no SyncWindowEnded Event: %+v", ev[len(ev)-1])
	}
	code, out = env.run(t, env.cronJobArgs(t, par, map[string]any{"repositories": bigRepos, "bandwidth": "1Mi", "concurrency": 2}))
	both := par.Log().Since(mark)
	st = env.status(t)
	if code != 0 || st.Run.Result != presync.ResultIncomplete || st.Run.TagsSynced != 1 || st.Run.TagsPending != 0 {
		t.Errorf("the run after the window exited %d with result %s, %d tags synced and %d pending, want 0, incomplete (the missing repositories), 1 and 0:\n%s", code, st.Run.Result, st.Run.TagsSynced, st.Run.TagsPending, out)
	}
	wantTags(t, repoStatus(t, st, "sync/big"), map[string]v1.Hash{"1.0": big.digest})
	for _, d := range big.contentBlobs() {
		if n := both.BlobFetches()[d.String()]; n != 1 {
			t.Errorf("across the cut run and the next, blob %s crossed from the storage host %d times, want once:\n%s", d, n, both)
		}
	}

	// 5. The parent goes down: the run fails naming it, keeps what was synced, and the registry serves it.
	par.Stop()
	code, out = env.run(t, args)
	st = env.status(t)
	if code != 1 || st.Run.Result != presync.ResultFailed {
		t.Errorf("with the parent down the run exited %d with result %s, want 1 and failed:\n%s", code, st.Run.Result, out)
	}
	app = repoStatus(t, st, "sync/app")
	if !strings.Contains(app.Error, "the parent could not be asked") {
		t.Errorf("with the parent down, the status of sync/app says %q", app.Error)
	}
	wantTags(t, app, map[string]v1.Hash{"v1": appV1.digest, "v2": appV2b.digest})
	c := newClient(ca, nil)
	for ref, want := range map[string]*multiArch{"sync/app:v1": appV1, "sync/app:v2": appV2b} {
		if err := c.pull(crHost+"/"+ref, want); err != nil {
			t.Errorf("with the parent down, pulling the synced %s: %v", ref, err)
		}
	}
	if err := c.pullPlatform(crHost+"/sync/other:2.0.0", other["2.0.0"], "linux/arm64"); err != nil {
		t.Errorf("with the parent down, pulling the synced linux/arm64 image of sync/other:2.0.0: %v", err)
	}
	if err := c.pullPlatform(crHost+"/sync/other:2.0.0", other["2.0.0"], "linux/amd64"); err == nil {
		t.Errorf("with the parent down, the linux/amd64 image of sync/other:2.0.0, which the sync does not select, was served")
	}
}

// syncEnv runs the product binary as the chart's sync CronJob runs it.
type syncEnv struct {
	api             *apistub.Server
	crHost          string
	productBin      string
	caFile          string
	kubeconfig      string
	statusConfigMap *corev1.ConfigMap
}

func newSyncEnv(t *testing.T, api *apistub.Server, ca *testCA, crHost, productBin string) *syncEnv {
	t.Helper()
	dir := t.TempDir()
	kubeconfig, err := api.WriteKubeconfig(dir)
	must(t, err)
	caFile := filepath.Join(dir, "ca.crt")
	writeFile(t, caFile, ca.CertPEM, 0o644)
	return &syncEnv{api: api, crHost: crHost, productBin: productBin, caFile: caFile, kubeconfig: kubeconfig}
}

// cronJobArgs renders the chart with the sync values and returns the CronJob's args, moved to the test: the
// Service's address to the registry's port here, the mounted trust bundle to the test CA's file, and the API server
// to the stand-in. It keeps the rendered status ConfigMap.
func (e *syncEnv) cronJobArgs(t *testing.T, par *acrparent.Parent, sync map[string]any) []string {
	t.Helper()
	s := map[string]any{"enabled": true}
	for k, v := range sync {
		s[k] = v
	}
	res, err := chartrender.Render(chartrender.Options{
		Set:    []string{"service.clusterIP=" + clusterIP, "cert-manager.enabled=false", "cert-manager.install=false"},
		Values: map[string]any{"connectionString": par.ConnectionString("cr"), "sync": s},
	})
	must(t, err)
	cj, ok := res.Find("CronJob", syncCronJob)
	if !ok {
		t.Fatalf("the chart renders no CronJob %s", syncCronJob)
	}
	cm, ok := res.Find("ConfigMap", syncStatusCM)
	if !ok {
		t.Fatalf("the chart renders no ConfigMap %s", syncStatusCM)
	}
	raw, err := json.Marshal(cm.Object)
	must(t, err)
	e.statusConfigMap = &corev1.ConfigMap{}
	must(t, json.Unmarshal(raw, e.statusConfigMap))

	var job struct {
		Spec struct {
			JobTemplate struct {
				Spec struct {
					Template struct {
						Spec corev1.PodSpec
					}
				}
			} `json:"jobTemplate"`
		}
	}
	raw, err = json.Marshal(cj.Object)
	must(t, err)
	must(t, json.Unmarshal(raw, &job))
	c := job.Spec.JobTemplate.Spec.Template.Spec.Containers[0]
	var caMount string
	for _, m := range c.VolumeMounts {
		if m.Name == "trust" {
			caMount = m.MountPath + "/ca.crt"
		}
	}
	args := []string{}
	seen := map[string]bool{}
	for _, a := range c.Args {
		switch {
		case a == "--registry=https://"+clusterIP+":443":
			a = "--registry=https://" + e.crHost
			seen["registry"] = true
		case a == "--ca-file="+caMount:
			a = "--ca-file=" + e.caFile
			seen["ca"] = true
		}
		args = append(args, a)
	}
	if !seen["registry"] || !seen["ca"] || args[0] != "sync" {
		t.Fatalf("the CronJob's args do not name the Service's address and the mounted trust bundle (%s) as expected: %q", caMount, c.Args)
	}
	return append(args, "--kubeconfig="+e.kubeconfig)
}

// run runs the binary with args and returns its exit code and output.
func (e *syncEnv) run(t *testing.T, args []string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.productBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("running the sync: %v\n%s", err, out)
	return 0, ""
}

// status reads the status the runs wrote into the ConfigMap.
func (e *syncEnv) status(t *testing.T) *presync.Status {
	t.Helper()
	cm := e.api.ConfigMap(syncNamespace, syncStatusCM)
	if cm == nil {
		t.Fatalf("the status ConfigMap %s is gone", syncStatusCM)
	}
	st, err := presync.ParseStatus([]byte(cm.Data[presync.StatusKey]))
	must(t, err)
	if st.Run.Finished == nil {
		t.Fatalf("the status says the run has not finished:\n%s", cm.Data[presync.StatusKey])
	}
	return st
}

func repoStatus(t *testing.T, st *presync.Status, name string) *presync.RepositoryStatus {
	t.Helper()
	for _, r := range st.Repositories {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("the status has no repository %s", name)
	return nil
}

// wantTags checks the tags a repository's status holds, with their digests.
func wantTags(t *testing.T, r *presync.RepositoryStatus, want map[string]v1.Hash) {
	t.Helper()
	got := map[string]string{}
	for tag, ts := range r.Tags {
		got[tag] = ts.Digest
	}
	w := map[string]string{}
	for tag, d := range want {
		w[tag] = d.String()
	}
	if fmt.Sprint(got) != fmt.Sprint(w) {
		t.Errorf("the status of %s holds tags %v, want %v", r.Name, got, w)
	}
}

// platformBlobs lists the config and layers of the index's image of platform p.
func (m *multiArch) platformBlobs(p string) []v1.Hash {
	var out []v1.Hash
	for _, img := range m.manifests {
		if img.platform == p {
			out = append(append(out, img.config), img.layers...)
		}
	}
	return out
}

// pullPlatform pulls the index ref by tag, then the image of platform p with every blob, checking digests.
func (c *client) pullPlatform(ref string, want *multiArch, p string) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	idx, err := remote.Index(r, c.opts...)
	if err != nil {
		return err
	}
	if d, err := idx.Digest(); err != nil || d != want.digest {
		return fmt.Errorf("%s has digest %s, want %s (%v)", ref, d, want.digest, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(im.Manifests, func(d v1.Descriptor) bool {
		return d.Platform != nil && d.Platform.OS+"/"+d.Platform.Architecture == p
	})
	if i < 0 {
		return fmt.Errorf("%s has no %s image", ref, p)
	}
	img, err := idx.Image(im.Manifests[i].Digest)
	if err != nil {
		return err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
