package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/connected-registry/connected-registry/internal/evict"
	"github.com/connected-registry/connected-registry/internal/presync"
)

const (
	// DefaultEvictRegistry is the eviction Job's own Distribution, on its pod's loopback, as the chart renders it.
	DefaultEvictRegistry = "http://127.0.0.1:5002"
	// evictRegistryWait is how long a run waits for that registry to answer.
	evictRegistryWait = 2 * time.Minute
	// evictRequestTimeout bounds each request to it.
	evictRequestTimeout = time.Minute
)

// EvictOptions runs one cache eviction (package evict): the chart's cache-eviction CronJob runs it twice, before
// garbage collection to delete what the plan evicts, and after it (--measure) to record what the cache holds.
type EvictOptions struct {
	KubeOptions
	// Registry is the Job's own Distribution: http:// on the pod's loopback, delete enabled.
	Registry string
	// MaxSize is registry.cache.maxSize, a quantity.
	MaxSize string
	// KeepRepositories is the JSON of sync.repositories; empty keeps nothing.
	KeepRepositories string
	// PullsConfigMap holds the pull records, StatusConfigMap the status; empty: none.
	PullsConfigMap, StatusConfigMap string
	// DryRun plans without deleting; Measure only records what the cache holds now.
	DryRun, Measure bool

	registry *url.URL
	maxSize  int64
	keep     []presync.Selection
}

// AddFlags registers the flags; the chart's CronJob passes them as args.
func (o *EvictOptions) AddFlags(fs *FlagSet) {
	const p = "CONNECTED_REGISTRY_EVICT_"
	o.addFlags(fs, "EVICT", requestTimeoutHelp)
	fs.StringVar(&o.Registry, "registry", p+"REGISTRY", DefaultEvictRegistry,
		"the Job's own Distribution on the pod's loopback (http://127.0.0.1:<port>), on the cache's storage, with delete enabled")
	fs.StringVar(&o.MaxSize, "max-size", p+"MAX_SIZE", "",
		"most bytes the cache may hold after the run, as a quantity (400Gi): registry.cache.maxSize (required unless --measure)")
	fs.StringVar(&o.KeepRepositories, "keep-repositories", p+"KEEP_REPOSITORIES", "",
		"JSON list of sync.repositories: every tag pre-sync would keep is never evicted; empty keeps nothing")
	fs.StringVar(&o.PullsConfigMap, "pulls-configmap", p+"PULLS_CONFIGMAP", "",
		"ConfigMap of the release namespace with the parent gate's pull records; empty: every image counts as never pulled")
	fs.StringVar(&o.StatusConfigMap, "status-configmap", p+"STATUS_CONFIGMAP", "",
		"ConfigMap of the release namespace that keeps the last run's status (status.json, summary); empty keeps none")
	fs.BoolVar(&o.DryRun, "dry-run", p+"DRY_RUN", false, "plan and report, delete nothing")
	fs.BoolVar(&o.Measure, "measure", p+"MEASURE", false,
		"only measure what the cache holds (after garbage collection) and record it in the status")
}

// Complete checks the options.
func (o *EvictOptions) Complete() error {
	u, err := url.Parse(o.Registry)
	if err != nil || u.Scheme != "http" || u.User != nil || u.RawQuery != "" || (u.Path != "" && u.Path != "/") {
		return usageErrorf("--registry %q is not the http:// URL of the Job's own registry on its loopback, like %s", o.Registry, DefaultEvictRegistry)
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usageErrorf("--registry %q is not on the pod's loopback: only the eviction Job may reach a registry that deletes", o.Registry)
	}
	o.registry = &url.URL{Scheme: u.Scheme, Host: u.Host}
	if !o.Measure {
		q, err := resource.ParseQuantity(o.MaxSize)
		if err != nil || q.Sign() <= 0 {
			return usageErrorf("--max-size %q is not a positive size such as 400Gi (registry.cache.maxSize)", o.MaxSize)
		}
		o.maxSize = q.Value()
	}
	if strings.TrimSpace(o.KeepRepositories) != "" && strings.TrimSpace(o.KeepRepositories) != "[]" {
		if o.keep, err = presync.ParseRepositories("--keep-repositories", o.KeepRepositories); err != nil {
			return &UsageError{Err: err}
		}
	}
	if o.PullsConfigMap == "" && o.StatusConfigMap == "" {
		return nil
	}
	return o.complete()
}

// Run evicts once (or measures) and prints the summary.
func (o *EvictOptions) Run(ctx context.Context, out io.Writer) error {
	reg := &evict.Registry{URL: o.registry, Client: &http.Client{Timeout: evictRequestTimeout, Transport: &http.Transport{Proxy: nil}}}
	if err := waitRegistry(ctx, reg, evictRegistryWait); err != nil {
		return err
	}
	if o.Measure {
		inv, err := reg.Walk(ctx, nil)
		if err != nil {
			return fmt.Errorf("measuring the cache: %w", err)
		}
		st := &evict.Status{}
		if o.StatusConfigMap != "" {
			if st, err = evict.LoadStatus(ctx, o.Client, o.Namespace, o.StatusConfigMap); err != nil {
				return err
			}
		}
		st.After = inv.Bytes()
		fmt.Fprintln(out, st.Summary())
		if o.StatusConfigMap != "" {
			return evict.SaveStatus(ctx, o.Client, o.Namespace, o.StatusConfigMap, st)
		}
		return nil
	}
	rn := &evict.Runner{Registry: reg, Keep: o.keep, MaxSize: o.maxSize, DryRun: o.DryRun, Log: o.Log}
	if o.PullsConfigMap != "" {
		rn.Pulls = &evict.ConfigMapPullStore{Client: o.Client, Namespace: o.Namespace, Name: o.PullsConfigMap}
	}
	st, err := rn.Run(ctx)
	if st != nil {
		fmt.Fprintln(out, st.Summary())
		if o.StatusConfigMap != "" {
			if serr := evict.SaveStatus(ctx, o.Client, o.Namespace, o.StatusConfigMap, st); serr != nil && err == nil {
				err = serr
			}
		}
	}
	if err != nil {
		return fmt.Errorf("evict: %w", err)
	}
	return nil
}

// waitRegistry waits until the registry answers /v2/, for at most wait.
func waitRegistry(ctx context.Context, reg *evict.Registry, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last error
	for {
		_, last = reg.Tags(ctx, "connected-registry-probe")
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Job's registry at %s did not answer within %s: %w", reg.URL, wait, last)
		case <-time.After(time.Second):
		}
	}
}
