package parentgate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the gate's metrics. The check command and the chart's alerts and dashboard read them by name.
const (
	MetricParentUp          = "connected_registry_parent_up"
	MetricParentLastSuccess = "connected_registry_parent_last_success_timestamp_seconds"
	MetricParentFetches     = "connected_registry_parent_fetches_total"
	MetricParentBytes       = "connected_registry_parent_bytes_total"
	MetricSpoolBytes        = "connected_registry_spool_bytes"
	MetricCacheUsed         = "connected_registry_cache_used_bytes"
	MetricCacheCapacity     = "connected_registry_cache_capacity_bytes"
)

// Results of a blob fetch, the result label of MetricParentFetches.
const (
	// FetchStarted: a blob GET that asked the parent (a fetch of its own, shared by later requests or not).
	FetchStarted = "started"
	// FetchShared: a blob GET served by a fetch another request started.
	FetchShared = "shared"
	// FetchFailed: a fetch that did not deliver the whole blob (the parent or its storage host unreachable,
	// an answer broken off, bytes that do not match the digest).
	FetchFailed = "failed"
)

// Metrics are the gate's counters and gauges, for one private prometheus.Registry. The zero value is not usable:
// NewMetrics registers them.
type Metrics struct {
	fetches *prometheus.CounterVec
	bytes   prometheus.Counter

	// up is 1 when the parent last answered, 0 when it last failed to; -1 before anything was tried.
	up atomic.Int32
	// lastSuccess is the unix nanos of the parent's last answer; 0: none yet.
	lastSuccess atomic.Int64
}

// NewMetrics registers the gate's metrics in reg. spooled reports the bytes the spool holds (Gate.Spooled);
// cacheDir, when not empty, is the registry's storage volume, whose use and size are read with statfs at each
// scrape.
func NewMetrics(reg prometheus.Registerer, spooled func() int64, cacheDir string) (*Metrics, error) {
	m := &Metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricParentFetches,
			Help: "Blob GETs of the registry the gate served, by result: started (asked the parent), shared (served by a fetch another request started), failed (a fetch that did not deliver the whole blob).",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricParentBytes,
			Help: "Bytes of answer bodies received from the parent and the storage hosts it redirects to.",
		}),
	}
	m.up.Store(-1)
	for _, r := range []string{FetchStarted, FetchShared, FetchFailed} {
		m.fetches.WithLabelValues(r)
	}
	cs := []prometheus.Collector{
		m.fetches, m.bytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricParentUp,
			Help: "1 when the parent answered the gate's last request or probe, 0 when it did not (unreachable, silent, TLS refused).",
		}, func() float64 { return float64(max(m.up.Load(), 0)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricParentLastSuccess,
			Help: "Unix time of the parent's last answer to the gate (any HTTP status below 500); 0 before the first.",
		}, func() float64 {
			if n := m.lastSuccess.Load(); n != 0 {
				return float64(n) / 1e9
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricSpoolBytes,
			Help: "Bytes the gate's spool holds for shared blob fetches.",
		}, func() float64 { return float64(spooled()) }),
	}
	if cacheDir != "" {
		cs = append(cs, &cacheCollector{dir: cacheDir,
			used: prometheus.NewDesc(MetricCacheUsed, "Bytes in use on the registry's storage volume (statfs).", nil, nil),
			size: prometheus.NewDesc(MetricCacheCapacity, "Size of the registry's storage volume (statfs).", nil, nil),
		})
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering the gate's metrics: %w", err)
		}
	}
	return m, nil
}

// fetch counts a blob GET by result; m may be nil.
func (m *Metrics) fetch(result string) {
	if m != nil {
		m.fetches.WithLabelValues(result).Inc()
	}
}

// parentAnswered records an answer of the parent at t; m may be nil.
func (m *Metrics) parentAnswered(t time.Time) {
	if m != nil {
		m.up.Store(1)
		m.lastSuccess.Store(t.UnixNano())
	}
}

// parentFailed records that the parent could not be asked; m may be nil.
func (m *Metrics) parentFailed() {
	if m != nil {
		m.up.Store(0)
	}
}

// countBody counts the bytes of r as they are read; m may be nil.
func (m *Metrics) countBody(r io.Reader) io.Reader {
	if m == nil {
		return r
	}
	return &countingReader{r: r, c: m.bytes}
}

type countingReader struct {
	r io.Reader
	c prometheus.Counter
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.c.Add(float64(n))
	}
	return n, err
}

// cacheCollector reads the storage volume's use at each scrape; a volume it cannot read is left out.
type cacheCollector struct {
	dir        string
	used, size *prometheus.Desc
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.used; ch <- c.size }

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	used, size, err := volumeUsage(c.dir)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.used, fmt.Errorf("statfs of the cache volume %s: %w", c.dir, err))
		return
	}
	ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(used))
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(size))
}

// Spooled is the bytes the spool holds.
func (g *Gate) Spooled() int64 { return g.spooled.Load() }

// isParent tells whether target (host:port) is the parent's API host.
func (g *Gate) isParent(target string) bool {
	return g.Parent != nil && strings.EqualFold(target, hostPort80443(g.Parent))
}

// Probe asks the parent for its API root (GET /v2/) as the registry would, and records the outcome in the
// metrics: any answer below 500, 401 included, is a parent that answers. It returns the error of a parent that
// did not answer.
func (g *Gate) Probe(ctx context.Context) error {
	u := *g.Parent
	u.Path = strings.TrimSuffix(g.Parent.Path, "/") + "/v2/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := g.httpClient().Do(req)
	if err != nil {
		g.Metrics.parentFailed()
		return fmt.Errorf("probing the parent %s: %w", u.Redacted(), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		g.Metrics.parentFailed()
		return fmt.Errorf("probing the parent %s: %w", u.Redacted(), errors.New(resp.Status))
	}
	g.Metrics.parentAnswered(g.clock()())
	return nil
}

// ProbeEvery probes the parent every interval in which the registry's requests did not hear from it, until ctx
// ends, so the metrics follow the parent on a quiet site.
func (g *Gate) ProbeEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if since := g.clock()().Sub(time.Unix(0, g.lastSeen(hostPort80443(g.Parent)).Load())); since >= interval {
			pctx, cancel := context.WithTimeout(ctx, interval)
			if err := g.Probe(pctx); err != nil && ctx.Err() == nil {
				g.logger().Debug("the parent did not answer the probe", "err", err)
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
