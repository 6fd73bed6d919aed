package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/connected-registry/connected-registry/internal/presync"
)

const (
	// DefaultSyncSchedule is ACR's default sync schedule: continuously, every minute.
	DefaultSyncSchedule = "* * * * *"
	// maxSyncConcurrency bounds --concurrency, as the chart's schema does.
	maxSyncConcurrency = 64
	// syncDialTimeout and syncHeaderTimeout bound connecting to the registry and waiting for its answer's headers
	// (the registry sends a blob's headers once the parent has answered).
	syncDialTimeout   = 10 * time.Second
	syncHeaderTimeout = 5 * time.Minute
	// syncRegistryWait is how long a run waits for the registry to answer: a run that starts with the release
	// finds it ready a moment later.
	syncRegistryWait = 2 * time.Minute
)

// SyncOptions runs one scheduled pre-sync through the connected registry (package presync): the chart's sync
// CronJob runs it.
type SyncOptions struct {
	KubeOptions
	// Registry is the connected registry's https:// URL, CAFile the PEM bundle its certificate verifies with.
	Registry, CAFile string
	// Username and Password authenticate to the registry when it requires clients to.
	Username, Password string
	// Repositories is the JSON list of sync.repositories.
	Repositories string
	// Schedule (cron, UTC) computes the next run for the status; Window (ISO-8601) bounds this run.
	Schedule, Window string
	// Concurrency and Bandwidth (bytes per second, as a quantity) shape the fetches.
	Concurrency int
	Bandwidth   string
	// StatusConfigMap keeps the status; empty keeps none (the run prints it only).
	StatusConfigMap string

	registry  *url.URL
	repos     []presync.Selection
	schedule  cron.Schedule
	window    time.Duration
	bandwidth int64
	roots     *x509.CertPool
}

// AddFlags registers the flags; the chart's sync CronJob passes them as args.
func (o *SyncOptions) AddFlags(fs *FlagSet) {
	const p = "CONNECTED_REGISTRY_SYNC_"
	o.addFlags(fs, "SYNC", requestTimeoutHelp)
	fs.StringVar(&o.Registry, "registry", p+"REGISTRY", "",
		"the connected registry's https:// URL, as the nodes reach it: https://<service.clusterIP>:443 (required)")
	fs.StringVar(&o.CAFile, "ca-file", p+"CA_FILE", "",
		"PEM file of the CAs the registry's certificate verifies with: ca.crt of the trust bundle ConfigMap; empty uses the system roots")
	fs.StringVar(&o.Username, "username", p+"USERNAME", "", "user name to pull with when the registry requires clients to authenticate")
	fs.StringVar(&o.Password, "password", p+"PASSWORD", "", "password of --username (give it through the environment)")
	fs.StringVar(&o.Repositories, "repositories", p+"REPOSITORIES", "",
		`what to hold, as the JSON list of sync.repositories: [{"name":"hello-world","tags":["latest"]},{"name":"app","semver":">=1.2","platforms":["linux/amd64"]}] (required)`)
	fs.StringVar(&o.Schedule, "schedule", p+"SCHEDULE", DefaultSyncSchedule,
		"the CronJob's schedule (cron, UTC), to report the next run")
	fs.StringVar(&o.Window, "window", p+"WINDOW", "",
		"how long the run may take, as an ISO-8601 duration (PT3H); it stops cleanly before then and the next run goes on; empty: until done")
	fs.IntVar(&o.Concurrency, "concurrency", p+"CONCURRENCY", 4, "repositories, tags and blobs worked on at once (each), 1 to 64")
	fs.StringVar(&o.Bandwidth, "bandwidth", p+"BANDWIDTH", "",
		"most bytes per second to read, shared by every fetch, as a quantity (20Mi is 20 MiB/s, 12.5M a 100 Mbit/s link); empty: no cap")
	fs.StringVar(&o.StatusConfigMap, "status-configmap", p+"STATUS_CONFIGMAP", "",
		"ConfigMap of the release namespace that keeps the status (status.json, summary) between runs; empty keeps none")
}

// Complete checks the options with the chart's messages and builds what the run needs.
func (o *SyncOptions) Complete() error {
	u, err := url.Parse(o.Registry)
	if o.Registry == "" || err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return usageErrorf("--registry %q is not the https:// URL of the connected registry, like https://10.96.0.50:443", o.Registry)
	}
	o.registry = &url.URL{Scheme: u.Scheme, Host: u.Host}
	if o.repos, err = presync.ParseRepositories("--repositories", o.Repositories); err != nil {
		return &UsageError{Err: err}
	}
	if o.schedule, err = presync.ParseSchedule("--schedule", o.Schedule); err != nil {
		return &UsageError{Err: err}
	}
	if o.window, err = presync.ParseWindow("--window", o.Window); err != nil {
		return &UsageError{Err: err}
	}
	if o.bandwidth, err = presync.ParseBandwidth("--bandwidth", o.Bandwidth); err != nil {
		return &UsageError{Err: err}
	}
	if o.Concurrency < 1 || o.Concurrency > maxSyncConcurrency {
		return usageErrorf("--concurrency %d is out of 1-%d", o.Concurrency, maxSyncConcurrency)
	}
	if (o.Username == "") != (o.Password == "") {
		return usageErrorf("--username and --password go together: give both to pull from a registry that requires clients to authenticate, or neither")
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--ca-file %s does not exist: the registry's tls-reloader publishes its CA to the trust bundle ConfigMap once the registry runs; the next run will find it", o.CAFile)
		}
		if err != nil {
			return fmt.Errorf("reading --ca-file: %w", err)
		}
		o.roots = x509.NewCertPool()
		if !o.roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca-file %s holds no certificate: the registry's tls-reloader publishes its CA to the trust bundle ConfigMap once it runs; the next run will find it", o.CAFile)
		}
	}
	if o.StatusConfigMap == "" {
		return nil
	}
	return o.complete()
}

// Run syncs once and prints the status's summary. It fails only when nothing could be synced.
func (o *SyncOptions) Run(ctx context.Context, out io.Writer) error {
	var store presync.Store = &presync.MemoryStore{}
	if o.StatusConfigMap != "" {
		store = &presync.ConfigMapStore{Client: o.Client, Namespace: o.Namespace, Name: o.StatusConfigMap, Log: o.Log}
	}
	dialer := &net.Dialer{Timeout: syncDialTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 nil, // the registry is in the cluster
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: o.roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   syncDialTimeout,
		ResponseHeaderTimeout: syncHeaderTimeout,
		MaxIdleConnsPerHost:   3 * o.Concurrency,
		DisableCompression:    true,
	}
	defer transport.CloseIdleConnections()
	r := &presync.Runner{
		Registry: o.registry, HTTPClient: &http.Client{Transport: transport},
		Username: o.Username, Password: o.Password,
		Repositories: o.repos, Schedule: o.schedule, ScheduleText: o.Schedule, WindowText: o.Window, Window: o.window,
		Concurrency: o.Concurrency, Bandwidth: o.bandwidth, Store: store, Log: o.Log, RegistryWait: syncRegistryWait,
	}
	status, err := r.Run(ctx)
	if status != nil {
		fmt.Fprint(out, status.Summary())
	}
	if err != nil && !errors.Is(err, presync.ErrNothingSynced) {
		return fmt.Errorf("sync: %w", err)
	}
	return err
}
