package check

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
)

// Proxy reaches a Service's port through the API server's service proxy
// (/api/v1/namespaces/<ns>/services/<scheme>:<name>:<port>/proxy/<path>), so the check needs no network path to
// the pod: only the API server's, and the RBAC verb get on services/proxy. For an https port the API server does
// not verify the registry's certificate; the certificate check reads it from its Secret instead.
type Proxy struct {
	// HTTP carries the API server's credentials (rest.HTTPClientFor).
	HTTP *http.Client
	// Host is the API server's URL, with any path prefix of the kubeconfig.
	Host string
}

// NewProxy returns a Proxy for the API server of cfg.
func NewProxy(cfg *rest.Config) (*Proxy, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the API server's HTTP client: %w", err)
	}
	host := cfg.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	return &Proxy{HTTP: hc, Host: strings.TrimRight(host, "/") + strings.TrimRight(cfg.APIPath, "/")}, nil
}

// Response is what the pod answered, or the API server when it could not reach the pod.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// maxBody bounds what is read of an answer.
const maxBody = 8 << 20

// Get sends GET path to the Service's port and returns the answer.
func (p *Proxy) Get(ctx context.Context, namespace, scheme, service, port, path string, header http.Header) (*Response, error) {
	u := p.Host + "/api/v1/namespaces/" + url.PathEscape(namespace) + "/services/" +
		url.PathEscape(scheme+":"+service+":"+port) + "/proxy" + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := p.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the API server's service proxy for %s:%s%s: %w", service, port, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s:%s%s: %w", service, port, path, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// Metrics are the samples of one scrape, summed per metric name (labels dropped).
type Metrics map[string]float64

// ParseMetrics reads Prometheus' text exposition format with the Prometheus parser.
func ParseMetrics(data []byte) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics: %w", err)
	}
	m := Metrics{}
	for name, f := range families {
		for _, s := range f.GetMetric() {
			switch {
			case s.Gauge != nil:
				m[name] += s.GetGauge().GetValue()
			case s.Counter != nil:
				m[name] += s.GetCounter().GetValue()
			case s.Untyped != nil:
				m[name] += s.GetUntyped().GetValue()
			default:
				m[name] += 0 // a summary or histogram: present, no single value
			}
		}
	}
	return m, nil
}

// Has reports whether the scrape held the metric.
func (m Metrics) Has(name string) bool { _, ok := m[name]; return ok }
