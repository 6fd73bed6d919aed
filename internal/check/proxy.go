package check

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

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

// Metrics are the samples of one scrape in Prometheus' text format, summed per metric name (labels dropped).
type Metrics map[string]float64

// ParseMetrics reads the text exposition format: one sample a line, `name{labels} value [timestamp]`; comments
// and lines that do not parse are skipped.
func ParseMetrics(data []byte) Metrics {
	m := Metrics{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		name, rest := l, ""
		if i := strings.IndexAny(l, "{ \t"); i >= 0 {
			name, rest = l[:i], l[i:]
		}
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if name == "" || len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		m[name] += v
	}
	return m
}

// Has reports whether the scrape held the metric.
func (m Metrics) Has(name string) bool { _, ok := m[name]; return ok }
