package presync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/connected-registry/connected-registry/internal/clock"
)

// Keys of the status ConfigMap.
const (
	// StatusKey holds the Status as JSON.
	StatusKey = "status.json"
	// SummaryKey holds Status.Summary.
	SummaryKey = "summary"
)

const (
	// maxStatusBytes keeps the status ConfigMap well below the API server's 1 MiB limit.
	maxStatusBytes = 900 << 10
	// storeTimeout bounds one write of the status or one Event.
	storeTimeout = 15 * time.Second
	// maxEventMessage is the longest Event message sent; the API server refuses longer ones.
	maxEventMessage = 1024
)

// Store keeps the status between runs and reports problems.
type Store interface {
	// Load returns the status the previous run left, or an empty one.
	Load(ctx context.Context) (*Status, error)
	// Save writes the status.
	Save(ctx context.Context, s *Status) error
	// Event reports a problem (warning) or a notable outcome; failures to report are logged, not returned.
	Event(ctx context.Context, warning bool, reason, message string)
}

// ErrNoStatusConfigMap: the status ConfigMap named does not exist.
var ErrNoStatusConfigMap = errors.New("the status ConfigMap does not exist: the chart creates it with the release (sync.enabled=true)")

// ConfigMapStore keeps the status in the ConfigMap the chart renders empty, <release>-sync-status, and records
// Events about it: `kubectl describe configmap` and `kubectl get events` show them.
type ConfigMapStore struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	Clock     clock.Clock
	Log       *slog.Logger

	mu  sync.Mutex
	uid string
}

// Load reads status.json.
func (c *ConfigMapStore) Load(ctx context.Context) (*Status, error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", c.Namespace, c.Name, ErrNoStatusConfigMap)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the status ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
	}
	c.mu.Lock()
	c.uid = string(cm.UID)
	c.mu.Unlock()
	s, err := ParseStatus([]byte(cm.Data[StatusKey]))
	if err != nil {
		// A status that cannot be read costs one full check of every tag, not the sync.
		if c.Log != nil {
			c.Log.Warn("the status ConfigMap holds no readable status: every tag is checked anew", "configmap", c.Name, "err", err)
		}
		return &Status{}, nil
	}
	return s, nil
}

// Save writes status.json and the summary, keeping the ConfigMap's other keys, labels and annotations.
func (c *ConfigMapStore) Save(ctx context.Context, s *Status) error {
	data, err := s.JSON()
	if err != nil {
		return err
	}
	summary := s.Summary()
	if len(data)+len(summary) > maxStatusBytes {
		s, data, summary, err = shrink(s)
		if err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[StatusKey], cm.Data[SummaryKey] = string(data), summary
		_, err = c.Client.CoreV1().ConfigMaps(c.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("ConfigMap %s/%s: %w", c.Namespace, c.Name, ErrNoStatusConfigMap)
	}
	if err != nil {
		return fmt.Errorf("writing the status ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
	}
	return nil
}

// shrink drops the digests of tags, from the repositories with the most, until the status fits the ConfigMap.
// A tag left out is checked whole by the next run: requests, but no blob moves again.
func shrink(s *Status) (*Status, []byte, string, error) {
	cp := *s
	cp.Repositories = nil
	for _, r := range s.Repositories {
		rc := *r
		rc.Tags = map[string]TagStatus{}
		for k, v := range r.Tags {
			rc.Tags[k] = v
		}
		cp.Repositories = append(cp.Repositories, &rc)
	}
	dropped := 0
	for {
		data, err := cp.JSON()
		if err != nil {
			return nil, nil, "", err
		}
		summary := cp.Summary()
		if len(data)+len(summary) <= maxStatusBytes {
			if dropped > 0 {
				cp.Run.Message += fmt.Sprintf(" (the status keeps no digest for %d tags, to fit its ConfigMap: the next run checks them whole)", dropped)
				data, err = cp.JSON()
				summary = cp.Summary()
			}
			return &cp, data, summary, err
		}
		sort.SliceStable(cp.Repositories, func(i, j int) bool { return len(cp.Repositories[i].Tags) > len(cp.Repositories[j].Tags) })
		biggest := cp.Repositories[0]
		if len(biggest.Tags) == 0 {
			return nil, nil, "", fmt.Errorf("the sync status is larger than %d bytes even without tags", maxStatusBytes)
		}
		keys := sortedKeys(biggest.Tags)
		for _, k := range keys[len(keys)/2:] {
			delete(biggest.Tags, k)
			dropped++
		}
	}
}

// Event records a core/v1 Event about the status ConfigMap.
func (c *ConfigMapStore) Event(ctx context.Context, warning bool, reason, message string) {
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	if len(message) > maxEventMessage {
		message = message[:maxEventMessage-3] + "..."
	}
	c.mu.Lock()
	uid := c.uid
	c.mu.Unlock()
	now := metav1.NewTime(clock.Or(c.Clock).Now())
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: c.Name + ".", Namespace: c.Namespace},
		InvolvedObject:      corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: c.Namespace, Name: c.Name, UID: types.UID(uid)},
		Reason:              reason,
		Message:             message,
		Type:                typ,
		Source:              corev1.EventSource{Component: "connected-registry-sync"},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "connected-registry.io/sync",
		ReportingInstance:   c.Name,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if _, err := c.Client.CoreV1().Events(c.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil && c.Log != nil {
		c.Log.Warn("recording an event failed", "reason", reason, "err", err)
	}
}

// MemoryStore keeps the status in memory: for a run by hand without a status ConfigMap, and for tests.
type MemoryStore struct {
	mu     sync.Mutex
	Status *Status
	Events []EventRecord
}

// Load returns a copy of the status saved last.
func (m *MemoryStore) Load(context.Context) (*Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Status == nil {
		return &Status{}, nil
	}
	data, err := m.Status.JSON()
	if err != nil {
		return nil, err
	}
	return ParseStatus(data)
}

// Save keeps a copy of s.
func (m *MemoryStore) Save(_ context.Context, s *Status) error {
	data, err := s.JSON()
	if err != nil {
		return err
	}
	cp, err := ParseStatus(data)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Status = cp
	return nil
}

// Event keeps the event.
func (m *MemoryStore) Event(_ context.Context, _ bool, reason, message string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Events = append(m.Events, EventRecord{Reason: reason, Message: message, Time: time.Now().UTC()})
}
