package trust

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/connected-registry/connected-registry/internal/clock"
)

const (
	// eventTimeout bounds the recording of one Event.
	eventTimeout = 5 * time.Second
	// maxEventMessage is the longest Event message the agent sends; the API server refuses longer ones.
	maxEventMessage = 1024
)

// EventSink records an Event about this node; the agent's way of reporting besides its readiness.
type EventSink interface {
	Event(ctx context.Context, warning bool, reason, message string)
}

// PodEvents records core/v1 Events about the agent's pod, naming its node, in the release namespace:
// `kubectl get events -n <namespace>` and `kubectl describe pod` show them. (An Event about the Node itself would
// have to live in the default namespace, outside the release's.) The tls-reloader records its Events about the
// registry pod the same way.
type PodEvents struct {
	Client    kubernetes.Interface
	Namespace string
	// Node, Pod and UID name the agent's node and pod.
	Node, Pod, UID string
	// Component reports the Events; empty is the trust agent.
	Component string
	// Clock stamps the Events; nil is the real time.
	Clock clock.Clock
	// Log receives the Events that could not be recorded; nil discards them.
	Log *slog.Logger
}

// Event records one Event; a failure is logged, not returned: reporting must not stop the agent.
func (p *PodEvents) Event(ctx context.Context, warning bool, reason, message string) {
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	now := metav1.NewTime(clock.Or(p.Clock).Now())
	component := p.Component
	if component == "" {
		component = "trust-agent"
	}
	instance := p.Node
	if instance == "" {
		instance = p.Pod
	}
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: "connected-registry-" + component + ".", Namespace: p.Namespace},
		InvolvedObject:      corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: p.Namespace, Name: p.Pod, UID: types.UID(p.UID)},
		Reason:              reason,
		Message:             truncate(message, maxEventMessage),
		Type:                typ,
		Source:              corev1.EventSource{Component: "connected-registry-" + component, Host: p.Node},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "connected-registry.io/" + component,
		ReportingInstance:   instance,
	}
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	if _, err := p.Client.CoreV1().Events(p.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil && p.Log != nil {
		p.Log.Warn("recording an event failed", "reason", reason, "err", err)
	}
}

// truncate cuts s to n bytes, marking the cut with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
