package check

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/connected-registry/connected-registry/internal/presync"
	"github.com/connected-registry/connected-registry/internal/registryapi"
)

// Metric names the metrics port of the registry pod exports (metrics.enabled).
const (
	MetricParentUp          = "connected_registry_parent_up"
	MetricParentLastSuccess = "connected_registry_parent_last_success_timestamp_seconds"
	MetricCacheUsed         = "connected_registry_cache_used_bytes"
	MetricCacheCapacity     = "connected_registry_cache_capacity_bytes"
)

// MetricsPort and GateMetricsPort name the ports of the release's metrics Service (metrics.enabled): the
// tls-reloader's (node trust, sync status, certificates, and the registry's own) and the parent gate's (parent
// reachable, fetches, cache volume), each serving /metrics.
const (
	MetricsPort     = "metrics"
	GateMetricsPort = "gate-metrics"
)

// DefaultProbeRepository is the repository the parent probe names when neither Checker.ProbeRepository nor the
// pre-sync names one. Any repository answers whether the parent is reachable; whether the sync token is accepted
// is told only for a repository inside its scope.
const DefaultProbeRepository = "connected-registry/check"

// probeDigest names a manifest no registry holds: asked for it by digest, the registry cannot answer from its
// cache and must ask the parent, so the answer is the parent's verdict (as in package presync).
var probeDigest = func() string {
	s := sha256.Sum256([]byte("connected-registry check probe: this manifest does not exist"))
	return "sha256:" + hex.EncodeToString(s[:])
}()

// Cache usage thresholds: the metrics' alert fires at 85 %; a registry whose volume is full fails every new pull.
const (
	cacheWarn = 0.85
	cacheFail = 0.95
)

// probeTimeout bounds the parent probe: the parent gate cuts a parent that does not answer well before it.
const probeTimeout = 45 * time.Second

// scrape is the result of reading the metrics port once.
type scrape struct {
	metrics Metrics
	// why says why there are no metrics.
	why string
}

// scrapeMetrics reads every metrics port of the release's metrics Service, once, into one set of samples.
func (c *Checker) scrapeMetrics(ctx context.Context) *scrape {
	if c.metrics != nil {
		return c.metrics
	}
	c.metrics = &scrape{why: "the Service has no port named " + MetricsPort + " (metrics.enabled=false)"}
	svc, ports := c.metricsService(ctx)
	switch {
	case svc == "":
		return c.metrics
	case c.Proxy == nil:
		c.metrics.why = "no service proxy to scrape the metrics through"
		return c.metrics
	}
	all := Metrics{}
	for _, port := range ports {
		resp, err := c.Proxy.Get(ctx, c.Namespace, "http", svc, port, "/metrics", nil)
		if err == nil && resp.Status != http.StatusOK {
			err = fmt.Errorf("the %s port of Service %s answered %d %s", port, svc, resp.Status, oneLine(string(resp.Body), 200))
		}
		var m Metrics
		if err == nil {
			if m, err = ParseMetrics(resp.Body); err != nil {
				err = fmt.Errorf("the %s port of Service %s: %w", port, svc, err)
			}
		}
		if err != nil {
			c.metrics.why = err.Error()
			return c.metrics
		}
		for k, v := range m {
			all[k] += v
		}
	}
	c.metrics = &scrape{metrics: all}
	return c.metrics
}

// metricsService is the release's Service with a port named metrics, and the metrics ports it has; "" if none.
func (c *Checker) metricsService(ctx context.Context) (string, []string) {
	ports := func(s *corev1.Service) []string {
		var names []string
		for _, p := range s.Spec.Ports {
			if p.Name == MetricsPort || p.Name == GateMetricsPort {
				names = append(names, p.Name)
			}
		}
		if !slices.Contains(names, MetricsPort) {
			return nil
		}
		return names
	}
	if s := c.target.service; s != nil && ports(s) != nil {
		return s.Name, ports(s)
	}
	sel := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/instance": c.Release}).String()
	list, err := c.Client.CoreV1().Services(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return "", nil
	}
	for i := range list.Items {
		if p := ports(&list.Items[i]); p != nil {
			return list.Items[i].Name, p
		}
	}
	return "", nil
}

// parent: the registry reaches its parent and the parent accepts the sync token. The probe asks the registry,
// through the API server's service proxy and the Service's https port, for a manifest by a digest no registry
// holds: the registry must ask the parent (through the parent gate), and relays its verdict. The metrics, when
// enabled, add the gate's own view: connected_registry_parent_up and the time of the last successful answer.
func (c *Checker) parent(ctx context.Context) Line {
	sc := c.scrapeMetrics(ctx)
	detail := ""
	if sc.metrics != nil && sc.metrics.Has(MetricParentLastSuccess) {
		if ts := sc.metrics[MetricParentLastSuccess]; ts > 0 {
			at := time.Unix(int64(ts), 0).UTC()
			detail = fmt.Sprintf("; last successful answer %s ago (%s)", c.now().Sub(at).Round(time.Second), at.Format(time.RFC3339))
		} else {
			detail = "; no successful answer since the registry started"
		}
	}
	gateDown := sc.metrics != nil && sc.metrics.Has(MetricParentUp) && sc.metrics[MetricParentUp] == 0
	hint := fmt.Sprintf("check the parent's address (connectionString's ParentGatewayEndpoint or registry.parent.url), the site's proxy (Azure.proxySettings) and firewall; the parent gate logs each failure: kubectl -n %s logs deployment/%s -c parent-gate",
		c.Namespace, c.target.deployment.Name)
	repo := c.probeRepository(ctx)
	verdict, st, why := c.probe(ctx, repo)
	switch {
	case st == OK && gateDown:
		return line(CheckParent, Warn, hint, "the parent answered the probe for %s (%s), but %s is 0%s: it failed since", repo, verdict, MetricParentUp, detail)
	case st == OK:
		return line(CheckParent, OK, "", "the parent is reachable and accepts the sync token (probe of %s: %s)%s", repo, verdict, detail)
	case st == Fail:
		return line(CheckParent, Fail, why+hint, "the parent cannot be reached through the registry (probe of %s: %s)%s", repo, verdict, detail)
	case st == Warn && why == "":
		// The probe could not tell; the metrics decide.
		if sc.metrics != nil && sc.metrics.Has(MetricParentUp) {
			if gateDown {
				return line(CheckParent, Fail, hint, "%s is 0: the parent gate cannot reach the parent%s (the probe could not ask: %s)", MetricParentUp, detail, verdict)
			}
			return line(CheckParent, OK, "", "%s is 1%s (the probe could not ask: %s)", MetricParentUp, detail, verdict)
		}
		return line(CheckParent, Warn, "set metrics.enabled=true for the parent gate's own view", "unknown: the probe could not ask the parent (%s), and there are no metrics (%s)", verdict, sc.why)
	}
	return line(CheckParent, Warn, why, "the parent is reachable but refuses the probe of %s (%s)%s", repo, verdict, detail)
}

// probeRepository is the repository the parent probe names.
func (c *Checker) probeRepository(ctx context.Context) string {
	if c.ProbeRepository != "" {
		return c.ProbeRepository
	}
	cj, err := c.Client.BatchV1().CronJobs(c.Namespace).Get(ctx, c.target.deployment.Name+"-sync", metav1.GetOptions{})
	if err == nil {
		for _, ct := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
			for _, a := range ct.Args {
				if v, ok := strings.CutPrefix(a, "--repositories="); ok {
					var repos []struct {
						Name string `json:"name"`
					}
					if json.Unmarshal([]byte(v), &repos) == nil && len(repos) > 0 && repos[0].Name != "" {
						return repos[0].Name
					}
				}
			}
		}
	}
	return DefaultProbeRepository
}

// probe asks the registry for probeDigest in repo. It returns the answer in words, the verdict (Warn with an
// empty why when the probe could not ask at all) and, for a problem, the start of a hint.
func (c *Checker) probe(ctx context.Context, repo string) (string, Status, string) {
	if c.Proxy == nil {
		return "no service proxy", Warn, ""
	}
	if c.target.service == nil {
		return "the release has no registry Service", Warn, ""
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	resp, err := c.Proxy.Get(ctx, c.Namespace, "https", c.target.service.Name, "https", "/v2/"+repo+"/manifests/"+probeDigest,
		http.Header{"Accept": {"application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"}})
	if err != nil {
		return err.Error(), Warn, ""
	}
	answer := fmt.Sprintf("%d %s", resp.Status, http.StatusText(resp.Status))
	if msg := registryapi.ErrorMessage(resp.Body); msg != "" {
		answer += ": " + msg
	}
	code, _, _ := strings.Cut(registryapi.ErrorMessage(resp.Body), " ")
	switch {
	case resp.Status == http.StatusOK:
		return answer, OK, ""
	case resp.Status == http.StatusNotFound && (code == "MANIFEST_UNKNOWN" || code == "NAME_UNKNOWN"):
		return answer, OK, ""
	case resp.Status == http.StatusUnauthorized && resp.Header.Get("Www-Authenticate") != "":
		// The registry itself asks for client credentials (client tokens): the probe cannot pass it.
		return "the registry requires client credentials", Warn, ""
	case resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden:
		return answer, Warn, fmt.Sprintf("the parent refuses the sync token access to %s: if the token's scope does not cover it, name a repository it covers with --probe-repository; if it does, the token or its password is wrong or expired (connectionString's SyncTokenName and SyncTokenPassword)", repo)
	case resp.Status == http.StatusServiceUnavailable && code == "":
		// The API server's own answer: no ready endpoint behind the Service.
		return answer + " " + oneLine(string(resp.Body), 200), Warn, ""
	}
	return answer, Fail, ""
}

// cache: how full the cache volume is, from the metrics.
func (c *Checker) cache(ctx context.Context) Line {
	sc := c.scrapeMetrics(ctx)
	if sc.metrics == nil {
		return line(CheckCache, Warn, "set metrics.enabled=true", "unknown: %s", sc.why)
	}
	if !sc.metrics.Has(MetricCacheUsed) || !sc.metrics.Has(MetricCacheCapacity) || sc.metrics[MetricCacheCapacity] <= 0 {
		return line(CheckCache, Warn, "the cache's usage is measured only for a volume (pvc); with object storage, see the storage's own console",
			"unknown: the metrics hold no %s and %s", MetricCacheUsed, MetricCacheCapacity)
	}
	used, capacity := sc.metrics[MetricCacheUsed], sc.metrics[MetricCacheCapacity]
	ratio := used / capacity
	msg := fmt.Sprintf("%s of %s used (%.0f %%)", presync.Bytes(int64(used)), presync.Bytes(int64(capacity)), math.Floor(ratio*100))
	hint := "grow the volume (pvc.storageRequest, if its StorageClass allows expansion) or hold less (sync.repositories)"
	switch {
	case ratio >= cacheFail:
		return line(CheckCache, Fail, hint+"; a full volume fails every pull of new content", "%s", msg)
	case ratio >= cacheWarn:
		return line(CheckCache, Warn, hint, "%s", msg)
	}
	return line(CheckCache, OK, "", "%s", msg)
}

// oneLine keeps s on one line, at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
