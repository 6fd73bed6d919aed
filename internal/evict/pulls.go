package evict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/connected-registry/connected-registry/internal/clock"
)

// Pulls are the last pull times the registry reported, by repository@digest and repository:tag.
type Pulls struct {
	// Since is when recording began: a manifest with no recorded pull counts as pulled then.
	Since time.Time `json:"since"`
	// Last is the last pull of each ref.
	Last map[string]time.Time `json:"last"`
}

func (p *Pulls) last(ref string) time.Time {
	if p == nil {
		return time.Time{}
	}
	if t, ok := p.Last[ref]; ok {
		return t
	}
	return p.Since
}

// Refs are the repository@digest refs recorded, sorted.
func (p *Pulls) Refs() []string {
	var out []string
	for ref := range p.Last {
		if _, _, ok := cutDigest(ref); ok {
			out = append(out, ref)
		}
	}
	sort.Strings(out)
	return out
}

func cutDigest(ref string) (repo, digest string, ok bool) {
	for i := len(ref) - 1; i >= 0; i-- {
		if ref[i] == '@' {
			return ref[:i], ref[i+1:], true
		}
	}
	return "", "", false
}

// merge takes the later time of each ref of o, and the earlier Since.
func (p *Pulls) merge(o *Pulls) {
	if p.Last == nil {
		p.Last = map[string]time.Time{}
	}
	if p.Since.IsZero() || (!o.Since.IsZero() && o.Since.Before(p.Since)) {
		p.Since = o.Since
	}
	for ref, t := range o.Last {
		if t.After(p.Last[ref]) {
			p.Last[ref] = t
		}
	}
}

// MaxPullRecords bounds the records a ConfigMap keeps (about 120 bytes each, well below its 1 MiB): the oldest
// are dropped first, and a dropped manifest counts as pulled when recording began, the oldest of all.
const MaxPullRecords = 6000

// trim drops the oldest records beyond max.
func (p *Pulls) trim(max int) {
	if len(p.Last) <= max {
		return
	}
	refs := make([]string, 0, len(p.Last))
	for ref := range p.Last {
		refs = append(refs, ref)
	}
	sort.Slice(refs, func(i, j int) bool { return p.Last[refs[i]].After(p.Last[refs[j]]) })
	for _, ref := range refs[max:] {
		delete(p.Last, ref)
	}
}

// PullStore keeps the pull records.
type PullStore interface {
	// Load returns the records kept, or empty ones.
	Load(ctx context.Context) (*Pulls, error)
	// Merge adds p to the records kept: the later time of each ref wins.
	Merge(ctx context.Context, p *Pulls) error
}

// PullsKey is the ConfigMap key of the records.
const PullsKey = "pulls.json"

// ErrNoPullsConfigMap: the ConfigMap named does not exist.
var ErrNoPullsConfigMap = errors.New("the pull records ConfigMap does not exist: the chart creates it with the release (registry.cache.maxSize set)")

// ConfigMapPullStore keeps the records in the ConfigMap the chart renders empty, <release>-cache-pulls. A
// ConfigMap, not a file on the cache volume: the gate that records and the Job that reads need no shared mount,
// it works the same with object storage, and several replicas merge into it.
type ConfigMapPullStore struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
}

// Load reads the records.
func (c *ConfigMapPullStore) Load(ctx context.Context) (*Pulls, error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", c.Namespace, c.Name, ErrNoPullsConfigMap)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the pull records ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
	}
	return parsePulls(cm.Data[PullsKey])
}

func parsePulls(s string) (*Pulls, error) {
	p := &Pulls{Last: map[string]time.Time{}}
	if s == "" {
		return p, nil
	}
	if err := json.Unmarshal([]byte(s), p); err != nil {
		return nil, fmt.Errorf("the pull records are not JSON: %w", err)
	}
	if p.Last == nil {
		p.Last = map[string]time.Time{}
	}
	return p, nil
}

// Merge adds p to the records, retrying on a conflicting write of another replica.
func (c *ConfigMapPullStore) Merge(ctx context.Context, p *Pulls) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		have, err := parsePulls(cm.Data[PullsKey])
		if err != nil {
			// Unreadable records are replaced: they cost the order of eviction, not the cache.
			have = &Pulls{Last: map[string]time.Time{}}
		}
		have.merge(p)
		have.trim(MaxPullRecords)
		data, err := json.Marshal(have)
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[PullsKey] = string(data)
		_, err = c.Client.CoreV1().ConfigMaps(c.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("ConfigMap %s/%s: %w", c.Namespace, c.Name, ErrNoPullsConfigMap)
	}
	if err != nil {
		return fmt.Errorf("writing the pull records ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
	}
	return nil
}

// EventsPath is where the Recorder takes the registry's notifications, on the parent gate's loopback listener.
const EventsPath = "/_gate/events"

// eventsMediaType is the media type of Distribution's notification envelopes.
const eventsMediaType = "application/vnd.docker.distribution.events.v2+json"

// maxEnvelopeBytes bounds one notification request.
const maxEnvelopeBytes = 4 << 20

// envelope is what the Recorder reads of Distribution's notifications.
type envelope struct {
	Events []struct {
		Action    string    `json:"action"`
		Timestamp time.Time `json:"timestamp"`
		Target    struct {
			MediaType  string `json:"mediaType"`
			Digest     string `json:"digest"`
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"target"`
	} `json:"events"`
}

// Recorder takes Distribution's notifications (one event per manifest pulled, served from the cache or not),
// keeps the last pull of each repository@digest and repository:tag, and writes them to Store every interval.
type Recorder struct {
	Store PullStore
	Clock clock.Clock
	Log   *slog.Logger

	mu      sync.Mutex
	pending *Pulls
}

// ServeHTTP records the pulls of one notification envelope. Distribution retries an endpoint that fails, so a
// malformed envelope is answered 400 and dropped by it after its threshold.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "the registry's notifications are POSTed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != eventsMediaType {
		http.Error(w, fmt.Sprintf("want a notification envelope (%s)", eventsMediaType), http.StatusUnsupportedMediaType)
		return
	}
	var env envelope
	if err := json.NewDecoder(io.LimitReader(req.Body, maxEnvelopeBytes)).Decode(&env); err != nil {
		http.Error(w, "the notification envelope is not JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	now := clock.Or(r.Clock).Now()
	r.mu.Lock()
	if r.pending == nil {
		r.pending = &Pulls{Since: now, Last: map[string]time.Time{}}
	}
	for _, e := range env.Events {
		t := e.Target
		if e.Action != "pull" || t.Repository == "" || t.Digest == "" || t.MediaType == "application/octet-stream" {
			continue
		}
		at := e.Timestamp
		if at.IsZero() || at.After(now) {
			at = now
		}
		at = at.UTC().Truncate(time.Second)
		r.pending.Last[t.Repository+"@"+t.Digest] = later(r.pending.Last[t.Repository+"@"+t.Digest], at)
		if t.Tag != "" {
			r.pending.Last[t.Repository+":"+t.Tag] = later(r.pending.Last[t.Repository+":"+t.Tag], at)
		}
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// Flush writes the pulls recorded since the last flush; on failure they are kept for the next one.
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	p := r.pending
	r.pending = nil
	r.mu.Unlock()
	if p == nil || len(p.Last) == 0 {
		return nil
	}
	if err := r.Store.Merge(ctx, p); err != nil {
		r.mu.Lock()
		if r.pending == nil {
			r.pending = p
		} else {
			r.pending.merge(p)
		}
		r.mu.Unlock()
		return err
	}
	return nil
}

// Run flushes every interval until ctx ends, then once more.
func (r *Recorder) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := r.Flush(final); err != nil && r.Log != nil {
				r.Log.Warn("writing the last pull records", "err", err)
			}
			cancel()
			return
		case <-t.C:
			if err := r.Flush(ctx); err != nil && r.Log != nil {
				r.Log.Warn("writing the pull records; kept for the next try", "err", err)
			}
		}
	}
}
