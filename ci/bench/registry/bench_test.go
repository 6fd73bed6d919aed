package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary play the benchmark's child roles (the raw TLS file server).
func TestMain(m *testing.M) {
	if handled, err := runRole(); handled {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestQuickBenchmark runs a small benchmark as a correctness check of the data plane and of the benchmark
// itself: every pull on every path returns the parent's digests, a cold pull through the connected registry
// makes the parent send each blob once, a warm pull sends nothing, and concurrent cold pulls with the chart's
// defaults make it send each blob once too.
// It asserts no timing.
func TestQuickBenchmark(t *testing.T) {
	o := &Options{
		Dir:         t.TempDir(),
		Runs:        1,
		LayerSize:   8_000_000,
		ColdClients: []int{4},
		WarmClients: []int{3},
		Sections:    []string{"single", "cold", "warm", "token"},
		log:         testWriter{t},
	}
	require.NoError(t, o.Complete())
	b := &bench{o: o}
	t.Cleanup(b.close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, b.setup(ctx))
	require.NoError(t, b.runSingle(ctx))
	require.NoError(t, b.runColdConcurrent(ctx))
	require.NoError(t, b.runWarmConcurrent(ctx))
	require.NoError(t, b.runToken(ctx))

	for _, s := range b.res.single {
		name := fmt.Sprintf("%s %s %s", s.image.repo, s.path, s.variant)
		require.Empty(t, s.errs, "%s: every pull must return the parent's digests", name)
		require.Len(t, s.times, o.Runs, name)
		require.Equal(t, s.image.size, s.bytes, "%s: bytes read", name)
		if s.path == "cold" {
			require.Len(t, s.parent, o.Runs, name)
			for _, n := range s.parent {
				// Each blob once; the parent's access log counts response bytes, so exactly the blobs' bytes.
				require.Equal(t, s.image.blobs, n, "%s: a cold pull must make the parent send each blob once", name)
			}
		}
	}
	for _, r := range b.res.coldConcurrent {
		require.Empty(t, r.errs, "%d concurrent cold pulls of %s", r.clients, r.image.repo)
		require.Len(t, r.parentBlobs, o.Runs)
		for _, n := range r.parentBlobs {
			if r.variant == "chart defaults" {
				// The parent gate shares the fetches: each blob once, however many clients.
				require.Equal(t, r.image.blobs, n, "%d concurrent cold pulls of %s: the parent must send each blob once", r.clients, r.image.repo)
				continue
			}
			require.GreaterOrEqual(t, n, r.image.blobs, "the parent must have sent every blob at least once")
			require.LessOrEqual(t, n, int64(r.clients)*r.image.blobs, "the parent sent more than one copy per client")
		}
	}
	for _, r := range b.res.warmConcurrent {
		require.Empty(t, r.errs, "%d concurrent warm pulls of %s", r.clients, r.image.repo)
		for _, n := range r.parentBlobs {
			require.Zero(t, n, "warm pulls of %s fetched blobs from the parent", r.image.repo)
		}
	}

	for _, r := range b.res.token {
		require.Empty(t, r.basic.errs, "cold pulls of %s from the Basic-auth parent", r.image.repo)
		require.Empty(t, r.token.errs, "cold pulls of %s from the token parent", r.image.repo)
		for i := range r.tokens {
			require.Equal(t, 1, r.tokens[i], "a cold pull of %s (one repository) must cost one token request", r.image.repo)
			require.Equal(t, r.blobs, r.storageGets[i], "a cold pull of %s must fetch each blob once from the storage host", r.image.repo)
		}
	}

	b.res.finished = time.Now()
	report := b.report()
	for _, want := range []string{"## Single pulls", "## Concurrent cold pulls", "## Warm-cache concurrency", "raw TLS file server (ceiling)", "## Parents with token auth"} {
		require.Contains(t, report, want)
	}
	require.NoError(t, os.WriteFile(filepath.Join(o.Dir, "registry.md"), []byte(report), 0o644))
	t.Logf("report of the quick run (no timing is asserted):\n%s", report)
}

func TestOptionsComplete(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{name: "no flags should give the issue's defaults", args: nil},
		{name: "an unknown section should fail naming it", args: []string{"--sections", "single,bogus"}, err: `section "bogus"`},
		{name: "an unknown protocol should fail naming it", args: []string{"--proto", "h3"}, err: `proto "h3"`},
		{name: "a variant without a name should fail", args: []string{"--variant", "=registry.logLevel=warn"}, err: "want NAME=EXPR"},
		{name: "storage with another section should fail: it writes a report of its own", args: []string{"--sections", "storage,single"}, err: "section storage runs alone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := Options{log: io.Discard}
			fs := newTestFlagSet(&o)
			perr := fs.Parse(tc.args)
			if perr == nil {
				perr = o.Complete()
			}
			if tc.err != "" {
				require.ErrorContains(t, perr, tc.err)
				return
			}
			require.NoError(t, perr)
			require.Equal(t, 5, o.Runs)
			require.Equal(t, int64(200_000_000), o.LayerSize)
			require.Equal(t, []int{10, 50}, o.ColdClients)
			require.Equal(t, []int{1, 10, 50}, o.WarmClients)
			require.Equal(t, http1, o.Proto)
		})
	}
}

func newTestFlagSet(o *Options) *flag.FlagSet {
	fs := flag.NewFlagSet("registry-bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.BindFlags(fs, func(string) string { return "" })
	return fs
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
