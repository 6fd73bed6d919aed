package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

func TestPeerArgs(t *testing.T) {
	t.Parallel()
	args := []string{"parent-gate", "--listen=127.0.0.1:5000", "--peers=cr-connected-registry-peers.connected-registry.svc", "--peer-listen=:5129", "--share-fetches=true"}
	ips := []string{"127.9.9.1", "127.9.9.2", "127.9.9.3"}

	on := peerArgs(append([]string{}, args...), ips, "127.9.9.2", 40001, true)
	require.Equal(t, []string{"parent-gate", "--listen=127.0.0.1:5000", "--peers=127.9.9.1,127.9.9.2,127.9.9.3", "--peer-listen=127.9.9.2:40001", "--share-fetches=true"}, on,
		"with peer routing the Service's name should become the replicas' addresses and the peer port the pod's address")

	off := peerArgs(append([]string{}, args...), ips, "127.9.9.2", 40001, false)
	require.Equal(t, []string{"parent-gate", "--listen=127.0.0.1:5000", "--share-fetches=true"}, off, "without peer routing both peer flags should go")
}

func TestSpreadRoundRobin(t *testing.T) {
	t.Parallel()
	hosts := []string{"r0", "r1", "r2"}
	got := map[string]int{}
	for i := range 8 {
		got[spreadHost(hosts, i)]++
	}
	require.Equal(t, map[string]int{"r0": 3, "r1": 3, "r2": 2}, got)
	require.Equal(t, "3 + 3 + 2", clientsPerReplica(8, 3), "the report should say how the clients were spread, as spreadHost spreads them")
	require.Equal(t, "8", clientsPerReplica(8, 1))
	ips := replicaIPs(3)
	require.Len(t, ips, 3)
	for i, ip := range ips {
		require.Regexp(t, `^127\.\d+\.\d+\.`+string(rune('1'+i))+`$`, ip)
	}
}

// TestStorageReport: the report's ratios are against case a, per run, and the parent's bytes over the image's.
func TestStorageReport(t *testing.T) {
	t.Parallel()
	img := &testImage{label: "test image", blobs: 1000}
	cases := storageCases()
	b := &bench{o: &Options{Runs: 2, StorageClients: 8, UplinkRate: 50_000_000}, storage: img}
	b.res.started, b.res.finished, b.res.loadStart = time.Now(), time.Now(), "1.00"
	b.res.storage = []*storageResult{
		{c: cases[0], wall: []time.Duration{2 * time.Second, 4 * time.Second}, cached: []time.Duration{2 * time.Second, 4 * time.Second}, parentBlobs: []int64{1000, 1000}, uplink: []int64{1010, 1012}},
		{c: cases[1], wall: []time.Duration{3 * time.Second, 6 * time.Second}, cached: []time.Duration{4 * time.Second, 7 * time.Second}, parentBlobs: []int64{1000, 1000}, uplink: []int64{1010, 1010}},
		{c: cases[2], wall: []time.Duration{4 * time.Second, 8 * time.Second}, cached: []time.Duration{4 * time.Second, 8 * time.Second}, parentBlobs: []int64{1000, 1000}, uplink: []int64{1020, 1020}},
		{c: cases[3], wall: []time.Duration{5 * time.Second, 9 * time.Second}, cached: []time.Duration{5 * time.Second, 9 * time.Second}, parentBlobs: []int64{2500, 3000}, uplink: []int64{2600, 3100},
			errs: []error{errors.New("GET /v2/x: 502 Bad Gateway")}},
	}
	report := b.storageReport()
	t.Log(report)
	// Medians are nearest-rank: of two runs, the lower.
	require.Contains(t, report, "| a. 1 replica, filesystem (PVC) | 8 | 2000 ms | 1.00 | 2000 ms | 1 kB | 1.00× | 1.01× | 0 |")
	require.Contains(t, report, "| b. 1 replica, Azure Blob | 8 | 3000 ms | 1.50 | 4000 ms |")
	require.Contains(t, report, "| c. 3 replicas, Azure Blob, peer routing on (chart) | 3 + 3 + 2 | 4000 ms | 2.00 | 4000 ms | 1 kB | 1.00× | 1.02× | 0 |")
	require.Contains(t, report, "| d. 3 replicas, Azure Blob, peer routing off (anchor) | 3 + 3 + 2 | 5000 ms | 2.25 | 5000 ms | 2 kB | 2.50× (runs: 2.50, 3.00) | 2.60× (runs: 2.60, 3.10) | 1 (GET /v2/x: 502 Bad Gateway) |")
}

// TestQuickStorage runs the storage section small, against a real Azurite: every case pulls the parent's digests
// and fills its cache; one replica, and three with peer routing, make the parent send each blob once; three
// without it make it send each at most once per replica (how often depends on how the replicas' misses overlap).
// It asserts no timing.
func TestQuickStorage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Azurite, the parent and eight registry pods")
	}
	if _, err := os.Stat(testenv.AzuriteBin(chartrender.RepoRoot())); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("azurite is missing: run bash ci/azurite.sh")
		}
		t.Skip("azurite is missing: run bash ci/azurite.sh")
	}
	o := &Options{Dir: t.TempDir(), Runs: 1, Sections: []string{"storage"}, StorageClients: 6, StorageLayers: 1,
		StorageLayerSize: 4_000_000, UplinkRate: 4_000_000, log: testWriter{t}}
	require.NoError(t, o.Complete())
	b := &bench{o: o}
	t.Cleanup(b.close)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	require.NoError(t, b.setup(ctx))
	require.NoError(t, b.runStorage(ctx))
	require.Len(t, b.res.storage, 4)
	for _, r := range b.res.storage {
		require.Empty(t, r.errs, r.c.name)
		require.Len(t, r.parentBlobs, 1, r.c.name)
		n := r.parentBlobs[0]
		if r.c.replicas == 1 || r.c.peers {
			require.Equal(t, b.storage.blobs, n, "%s: the parent must send each blob once for the whole site", r.c.name)
			continue
		}
		require.GreaterOrEqual(t, n, b.storage.blobs, "%s: the parent must have sent every blob", r.c.name)
		require.LessOrEqual(t, n, int64(r.c.replicas)*b.storage.blobs, "%s: a replica's gate fetches each blob once", r.c.name)
	}
	b.res.finished = time.Now()
	report := b.storageReport()
	require.NoError(t, os.WriteFile(filepath.Join(o.Dir, "storage.md"), []byte(report), 0o644))
	t.Logf("report of the quick run (no timing is asserted):\n%s", report)
}
