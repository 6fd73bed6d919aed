package parentgate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// withMetrics gives g metrics in a registry of their own, and returns a reader of one sample: the value of the
// metric name whose labels include want, and whether there is one.
func withMetrics(t *testing.T, g *Gate, cacheDir string) func(name string, want ...string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg, g.Spooled, cacheDir)
	require.NoError(t, err)
	g.Metrics = m
	return func(name string, want ...string) (float64, bool) {
		t.Helper()
		families, err := reg.Gather()
		require.NoError(t, err)
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, s := range f.GetMetric() {
				if hasLabels(s, want...) {
					return sampleValue(s), true
				}
			}
		}
		return 0, false
	}
}

func hasLabels(s *dto.Metric, kv ...string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func sampleValue(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	}
	return s.GetUntyped().GetValue()
}

func TestMetrics(t *testing.T) {
	t.Parallel()

	t.Run("concurrent GETs of one blob should count one fetch started, the others shared, and the blob's bytes once", func(t *testing.T) {
		t.Parallel()
		content, path := blob(1 << 20)
		release := make(chan struct{})
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
			w.Write(content[:len(content)/2])
			w.(http.Flusher).Flush()
			<-release
			w.Write(content[len(content)/2:])
		}))
		defer parent.Close()
		g, gate := forwardingGate(t, parent)
		metric := withMetrics(t, g, "")

		const clients = 4
		errs := make(chan error, clients)
		for range clients {
			go func() {
				_, body, err := getWith(t, gate+path, nil)
				if err == nil && len(body) != len(content) {
					err = errShort
				}
				errs <- err
			}()
		}
		require.Eventually(t, func() bool { return g.readersOf(path) == clients }, 10*time.Second, 5*time.Millisecond)
		require.Eventually(t, func() bool { v, _ := metric(MetricSpoolBytes); return v == float64(len(content)) }, 10*time.Second, 5*time.Millisecond,
			"the spool holds the blob being fetched, from its Content-Length on")
		close(release)
		for range clients {
			require.NoError(t, <-errs)
		}
		started, _ := metric(MetricParentFetches, "result", FetchStarted)
		shared, _ := metric(MetricParentFetches, "result", FetchShared)
		failed, ok := metric(MetricParentFetches, "result", FetchFailed)
		require.True(t, ok, "every result is exported from the start, at 0")
		require.Equal(t, []float64{1, clients - 1, 0}, []float64{started, shared, failed})
		bytes, _ := metric(MetricParentBytes)
		require.EqualValues(t, len(content), bytes)
		up, _ := metric(MetricParentUp)
		require.EqualValues(t, 1, up)
		last, _ := metric(MetricParentLastSuccess)
		require.InDelta(t, float64(time.Now().Unix()), last, 3600, "the parent's last answer is a unix time")
		require.Eventually(t, func() bool { v, _ := metric(MetricSpoolBytes); return v == 0 }, 10*time.Second, 5*time.Millisecond,
			"the spool is empty once every request has its copy")
	})

	t.Run("unshared GETs of a blob should each count a fetch started", func(t *testing.T) {
		t.Parallel()
		content, path := blob(1000)
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(content) }))
		defer parent.Close()
		g, gate := forwardingGate(t, parent)
		g.ShareFetches = false
		metric := withMetrics(t, g, "")
		for range 2 {
			_, _, err := getWith(t, gate+path, nil)
			require.NoError(t, err)
		}
		started, _ := metric(MetricParentFetches, "result", FetchStarted)
		require.EqualValues(t, 2, started)
		bytes, _ := metric(MetricParentBytes)
		require.EqualValues(t, 2*len(content), bytes)
	})

	t.Run("a blob whose bytes do not match its digest should count a failed fetch", func(t *testing.T) {
		t.Parallel()
		_, path := blob(1000)
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("other bytes")) }))
		defer parent.Close()
		for _, share := range []bool{true, false} {
			g, gate := forwardingGate(t, parent)
			g.ShareFetches = share
			metric := withMetrics(t, g, "")
			_, _, err := getWith(t, gate+path, nil)
			require.Error(t, err, "the body must break off")
			failed, _ := metric(MetricParentFetches, "result", FetchFailed)
			require.EqualValues(t, 1, failed, "shared fetches %t", share)
		}
	})

	t.Run("the parent's reachability should follow its answers, with the time of the last one", func(t *testing.T) {
		t.Parallel()
		var status atomic.Int32
		status.Store(http.StatusUnauthorized)
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(int(status.Load()))
		}))
		g, _ := forwardingGate(t, parent)
		g.Cooldown = 0
		metric := withMetrics(t, g, "")
		up, _ := metric(MetricParentUp)
		require.Zero(t, up, "before anything was asked")
		last, _ := metric(MetricParentLastSuccess)
		require.Zero(t, last)

		require.NoError(t, g.Probe(context.Background()), "a 401 is an answer")
		up, _ = metric(MetricParentUp)
		require.EqualValues(t, 1, up)
		answered, _ := metric(MetricParentLastSuccess)
		require.NotZero(t, answered)

		status.Store(http.StatusServiceUnavailable)
		require.ErrorContains(t, g.Probe(context.Background()), "503")
		up, _ = metric(MetricParentUp)
		require.Zero(t, up)

		status.Store(http.StatusOK)
		require.NoError(t, g.Probe(context.Background()))
		up, _ = metric(MetricParentUp)
		require.EqualValues(t, 1, up)

		parent.Close()
		require.Error(t, g.Probe(context.Background()), "a stopped parent")
		up, _ = metric(MetricParentUp)
		require.Zero(t, up)
		last, _ = metric(MetricParentLastSuccess)
		require.GreaterOrEqual(t, last, answered, "the last answer stays")
	})

	t.Run("a parent that refuses connections should turn parent_up to 0 on a registry's request", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		g, gate := forwardingGate(t, parent)
		metric := withMetrics(t, g, "")
		resp, _, err := getWith(t, gate+"/v2/", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		up, _ := metric(MetricParentUp)
		require.EqualValues(t, 1, up)
		parent.Close()
		resp, _, err = getWith(t, gate+"/v2/", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusBadGateway, resp.StatusCode)
		up, _ = metric(MetricParentUp)
		require.Zero(t, up)
	})

	t.Run("the cache volume's use and size should be read with statfs at each scrape", func(t *testing.T) {
		t.Parallel()
		metric := withMetrics(t, newGate(), t.TempDir())
		size, ok := metric(MetricCacheCapacity)
		require.True(t, ok)
		require.Positive(t, size)
		used, ok := metric(MetricCacheUsed)
		require.True(t, ok)
		require.LessOrEqual(t, used, size)
	})

	t.Run("without a cache directory the cache metrics should be left out", func(t *testing.T) {
		t.Parallel()
		metric := withMetrics(t, newGate(), "")
		_, ok := metric(MetricCacheCapacity)
		require.False(t, ok)
	})
}

var errShort = &shortError{}

type shortError struct{}

func (*shortError) Error() string { return "a request got fewer bytes than the blob" }
