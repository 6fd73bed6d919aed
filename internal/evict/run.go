package evict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/connected-registry/connected-registry/internal/clock"
	"github.com/connected-registry/connected-registry/internal/presync"
)

// Status is what a run did, as the status ConfigMap's status.json holds it.
type Status struct {
	// Time is when the run planned.
	Time time.Time `json:"time"`
	// MaxSize is registry.cache.maxSize in bytes.
	MaxSize int64 `json:"maxSize"`
	// Before is the cache's content before the run; Planned what the plan leaves; After what the registry holds
	// after garbage collection (0 until measured).
	Before  int64 `json:"before"`
	Planned int64 `json:"planned"`
	After   int64 `json:"after,omitempty"`
	// Images counts the images held before the run, Kept those pre-sync keeps (KeptBytes in all).
	Images    int   `json:"images"`
	Kept      int   `json:"kept"`
	KeptBytes int64 `json:"keptBytes"`
	// Evicted are the images evicted.
	Evicted []Image `json:"evicted,omitempty"`
	// DeletedManifests counts the manifests deleted.
	DeletedManifests int `json:"deletedManifests"`
	// Problem says why the cache still exceeds MaxSize, if it does.
	Problem string `json:"problem,omitempty"`
}

// Summary is the status in one line, as the Job's log and the ConfigMap's summary give it. Its numbers are the
// ones a metric connected_registry_eviction_* would carry.
func (s *Status) Summary() string {
	after := s.Planned
	if s.After > 0 {
		after = s.After
	}
	line := fmt.Sprintf("cache %s of %s before, %s after: evicted %d of %d images (%d manifests), %d kept by pre-sync (%s)",
		presync.Bytes(s.Before), presync.Bytes(s.MaxSize), presync.Bytes(after), len(s.Evicted), s.Images,
		s.DeletedManifests, s.Kept, presync.Bytes(s.KeptBytes))
	if s.Problem != "" {
		line += "; " + s.Problem
	}
	return line
}

// Runner is one eviction run.
type Runner struct {
	Registry *Registry
	Pulls    PullStore
	// Keep are the pre-sync selections (sync.repositories); nil keeps nothing.
	Keep []presync.Selection
	// MaxSize is registry.cache.maxSize in bytes.
	MaxSize int64
	// DryRun plans and reports, deleting nothing.
	DryRun bool
	Clock  clock.Clock
	Log    *slog.Logger
}

// Run plans and deletes the manifests to evict; garbage collection then frees their blobs.
func (rn *Runner) Run(ctx context.Context) (*Status, error) {
	log := rn.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pulls := &Pulls{}
	if rn.Pulls != nil {
		p, err := rn.Pulls.Load(ctx)
		if err != nil {
			return nil, err
		}
		pulls = p
	}
	inv, err := rn.Registry.Walk(ctx, pulls.Refs())
	if err != nil {
		return nil, err
	}
	tags := map[string][]string{}
	for _, m := range inv.Manifests {
		tags[m.Repository] = append(tags[m.Repository], m.Tags...)
	}
	keep := KeepSynced(rn.Keep, func(repo string) []string { return tags[repo] })
	plan := MakePlan(inv, pulls, keep, rn.MaxSize)
	st := &Status{
		Time: clock.Or(rn.Clock).Now().UTC(), MaxSize: plan.MaxSize, Before: plan.Before, Planned: plan.After,
		Images: plan.Images, Kept: plan.Kept, KeptBytes: plan.KeptBytes, Evicted: plan.Evict,
	}
	if plan.After > rn.MaxSize {
		st.Problem = fmt.Sprintf("what pre-sync keeps (%s) exceeds registry.cache.maxSize: raise it (and pvc.storageRequest) or sync less", presync.Bytes(plan.KeptBytes))
	}
	for _, img := range plan.Evict {
		log.Info("evicting", "image", img.Ref(), "tags", strings.Join(img.Tags, ","), "lastPull", img.LastPull)
	}
	if rn.DryRun {
		return st, nil
	}
	for _, ref := range plan.Delete {
		repo, digest, _ := cutDigest(ref)
		if err := rn.Registry.DeleteManifest(ctx, repo, digest); err != nil && !errors.Is(err, ErrNotFound) {
			return st, err
		}
		st.DeletedManifests++
	}
	return st, nil
}

// Status ConfigMap keys.
const (
	StatusKey  = "status.json"
	SummaryKey = "summary"
)

// SaveStatus writes the status to the ConfigMap the chart renders empty, <release>-cache-status, keeping its
// other keys.
func SaveStatus(ctx context.Context, client kubernetes.Interface, namespace, name string, st *Status) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[StatusKey], cm.Data[SummaryKey] = string(data), st.Summary()
		_, err = client.CoreV1().ConfigMaps(namespace).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the cache status ConfigMap %s/%s does not exist: the chart creates it with registry.cache.maxSize", namespace, name)
	}
	if err != nil {
		return fmt.Errorf("writing the cache status ConfigMap %s/%s: %w", namespace, name, err)
	}
	return nil
}

// LoadStatus reads the status a run left.
func LoadStatus(ctx context.Context, client kubernetes.Interface, namespace, name string) (*Status, error) {
	cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the cache status ConfigMap %s/%s: %w", namespace, name, err)
	}
	st := &Status{}
	if s := cm.Data[StatusKey]; s != "" {
		if err := json.Unmarshal([]byte(s), st); err != nil {
			return nil, fmt.Errorf("the cache status is not JSON: %w", err)
		}
	}
	return st, nil
}
