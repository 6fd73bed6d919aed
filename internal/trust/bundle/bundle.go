// Package bundle is the trust bundle protocol between the registry pod and the nodes' trust agents.
//
// The registry pod's tls-reloader publishes the CA of the registry's TLS Secret into the trust bundle ConfigMap,
// under the key ca.crt, with the bundle's fingerprint as an annotation. Each node's trust agent reads the bundle
// from there (it has no access to the Secret, and may only read the ConfigMap), installs it on its node, and
// acknowledges it in an object of its own: its node's Lease (Acks), whose holder is the node and whose annotation
// AckFingerprintAnnotation is the fingerprint of the bundle it installed. An agent thus never writes what another
// node trusts; the chart's admission policy lets an agent's token write only the Lease its own node holds. The
// reloader serves a certificate from a new CA only once every node of the agents' DaemonSet has acknowledged a
// bundle that verifies it.
//
// Releases before the Leases acknowledged in annotations of the ConfigMap (AckAnnotation); the reloader still
// counts those for a node without a Lease, so an upgrade in the middle of a renewal waits for no node twice.
package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Annotations and the data key of the trust bundle ConfigMap.
const (
	// AckAnnotationPrefix + node held the fingerprint of the bundle the node's agent had installed, before the
	// agents acknowledged in Leases; the reloader still reads it.
	AckAnnotationPrefix = "node.trust.connected-registry.io/"
	// FingerprintAnnotation is the fingerprint of the bundle's ca.crt.
	FingerprintAnnotation = "trust.connected-registry.io/fingerprint"
	// Key is the key of the CA bundle in the ConfigMap.
	Key = "ca.crt"
)

// maxAnnotationName is the longest name part of an annotation key Kubernetes accepts.
const maxAnnotationName = 63

// Fingerprint names a CA bundle in acknowledgements: the first 16 hex digits of its SHA-256.
func Fingerprint(bundle []byte) string {
	s := sha256.Sum256(bundle)
	return hex.EncodeToString(s[:])[:16]
}

// AckAnnotation is the annotation key an agent acknowledges a bundle under; long node names are hashed to fit.
func AckAnnotation(node string) string {
	if len(node) <= maxAnnotationName {
		return AckAnnotationPrefix + node
	}
	s := sha256.Sum256([]byte(node))
	return AckAnnotationPrefix + node[:46] + "-" + hex.EncodeToString(s[:])[:16]
}

// ConfigMap is the trust bundle ConfigMap of one release.
type ConfigMap struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
}

// Publish copies ca into the ConfigMap with its fingerprint when it differs. It reports whether it wrote.
// Acknowledgements of an earlier bundle stay: they name that bundle's fingerprint, so they do not count for ca.
func (c ConfigMap) Publish(ctx context.Context, ca []byte) (bool, error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading ConfigMap %s: %w", c.Name, err)
	}
	if cm.Data[Key] == string(ca) {
		return false, nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[Key] = string(ca)
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[FingerprintAnnotation] = Fingerprint(ca)
	if _, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return false, fmt.Errorf("updating ConfigMap %s: %w", c.Name, err)
	}
	return true, nil
}

// Status reads the published bundle and the acknowledgements of earlier releases in the ConfigMap's
// annotations (annotation key -> fingerprint). The bundle is empty when none is published yet.
func (c ConfigMap) Status(ctx context.Context) (bundle []byte, legacy map[string]string, err error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("reading ConfigMap %s: %w", c.Name, err)
	}
	legacy = map[string]string{}
	for k, v := range cm.Annotations {
		if strings.HasPrefix(k, AckAnnotationPrefix) {
			legacy[k] = v
		}
	}
	return []byte(cm.Data[Key]), legacy, nil
}

// Read returns the published bundle. It fails while no bundle is published.
func (c ConfigMap) Read(ctx context.Context) ([]byte, error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if cm.Data[Key] == "" {
		return nil, fmt.Errorf("ConfigMap %s has no %s yet: the registry pod publishes it when it starts", c.Name, Key)
	}
	return []byte(cm.Data[Key]), nil
}

// Labels and the annotation of the acknowledgement Leases.
const (
	// AckComponent is the app.kubernetes.io/component of the acknowledgement Leases.
	AckComponent = "trust-ack"
	// AckFingerprintAnnotation holds the fingerprint of the bundle the Lease's node has installed.
	AckFingerprintAnnotation = "trust.connected-registry.io/fingerprint"
	// AckNodeAnnotation names the node, whose name may be too long for a label.
	AckNodeAnnotation = "trust.connected-registry.io/node"
	// AckContainerdAnnotation says whether containerd on the node uses the installed entry: ContainerdUses or
	// ContainerdIgnores; absent from the Leases of agents before it.
	AckContainerdAnnotation = "trust.connected-registry.io/containerd"
)

// Values of AckContainerdAnnotation.
const (
	ContainerdUses    = "uses"
	ContainerdIgnores = "ignores"
)

// maxName is the longest object name Kubernetes accepts (a DNS subdomain).
const maxName = 253

// Acks are the acknowledgement Leases of one release's trust agents, one per node, in the release's namespace.
type Acks struct {
	Client    kubernetes.Interface
	Namespace string
	// Release is the Helm release: the Leases are named <Release>-trust-ack-<node> and carry its
	// app.kubernetes.io/instance label.
	Release string
}

// Name is the Lease of node; a name too long for Kubernetes is cut and hashed.
func (a Acks) Name(node string) string {
	name := a.Release + "-trust-ack-" + node
	if len(name) <= maxName {
		return name
	}
	s := sha256.Sum256([]byte(node))
	return strings.TrimRight(name[:maxName-17], ".-") + "-" + hex.EncodeToString(s[:])[:16]
}

// Labels select the release's acknowledgement Leases.
func (a Acks) Labels() map[string]string {
	return map[string]string{
		"app.kubernetes.io/instance":   a.Release,
		"app.kubernetes.io/component":  AckComponent,
		"app.kubernetes.io/part-of":    "connected-registry",
		"app.kubernetes.io/managed-by": "connected-registry-trust-agent",
	}
}

func (a Acks) selector() string {
	return labels.SelectorFromSet(labels.Set{"app.kubernetes.io/instance": a.Release, "app.kubernetes.io/component": AckComponent}).String()
}

// Get returns the fingerprint node last acknowledged, empty when none.
func (a Acks) Get(ctx context.Context, node string) (string, error) {
	st, err := a.GetState(ctx, node)
	return st.Fingerprint, err
}

// GetState returns what node's Lease acknowledges, empty when it has none.
func (a Acks) GetState(ctx context.Context, node string) (AckState, error) {
	l, err := a.Client.CoordinationV1().Leases(a.Namespace).Get(ctx, a.Name(node), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return AckState{}, nil
	}
	if err != nil {
		return AckState{}, err
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != node {
		return AckState{}, nil
	}
	return AckState{Fingerprint: l.Annotations[AckFingerprintAnnotation], Containerd: l.Annotations[AckContainerdAnnotation]}, nil
}

// Ack records that node has installed the bundle with fingerprint fp, in node's own Lease: created the first
// time, updated after.
func (a Acks) Ack(ctx context.Context, node, fp string) error {
	return a.Record(ctx, node, AckState{Fingerprint: fp})
}

// AckState is what a node's Lease acknowledges.
type AckState struct {
	// Fingerprint is the bundle the node has installed.
	Fingerprint string
	// Containerd is ContainerdUses or ContainerdIgnores; empty: not known (an earlier agent, or left as it is).
	Containerd string
}

// Record records st in node's own Lease: created the first time, updated after. An empty st.Containerd
// leaves what the Lease says about containerd.
func (a Acks) Record(ctx context.Context, node string, st AckState) error {
	now := metav1.NewMicroTime(time.Now())
	leases := a.Client.CoordinationV1().Leases(a.Namespace)
	l, err := leases.Get(ctx, a.Name(node), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		holder := node
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.Name(node), Namespace: a.Namespace, Labels: a.Labels(),
				Annotations: st.annotations(node)},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l = l.DeepCopy()
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	for k, v := range st.annotations(node) {
		l.Annotations[k] = v
	}
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

func (st AckState) annotations(node string) map[string]string {
	m := map[string]string{AckFingerprintAnnotation: st.Fingerprint, AckNodeAnnotation: node}
	if st.Containerd != "" {
		m[AckContainerdAnnotation] = st.Containerd
	}
	return m
}

// States returns, per node, what its Lease acknowledges.
func (a Acks) States(ctx context.Context) (map[string]AckState, error) {
	list, err := a.Client.CoordinationV1().Leases(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: a.selector()})
	if err != nil {
		return nil, fmt.Errorf("listing the acknowledgement Leases: %w", err)
	}
	out := map[string]AckState{}
	for _, l := range list.Items {
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			continue
		}
		out[*l.Spec.HolderIdentity] = AckState{Fingerprint: l.Annotations[AckFingerprintAnnotation],
			Containerd: l.Annotations[AckContainerdAnnotation]}
	}
	return out, nil
}

// List returns, per node, the fingerprint its Lease acknowledges.
func (a Acks) List(ctx context.Context) (map[string]string, error) {
	list, err := a.Client.CoordinationV1().Leases(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: a.selector()})
	if err != nil {
		return nil, fmt.Errorf("listing the acknowledgement Leases: %w", err)
	}
	out := map[string]string{}
	for _, l := range list.Items {
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			continue
		}
		out[*l.Spec.HolderIdentity] = l.Annotations[AckFingerprintAnnotation]
	}
	return out, nil
}

// Delete deletes every acknowledgement Lease of the release, and returns how many there were.
func (a Acks) Delete(ctx context.Context) (int, error) {
	list, err := a.Client.CoordinationV1().Leases(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: a.selector()})
	if err != nil {
		return 0, err
	}
	for _, l := range list.Items {
		if err := a.Client.CoordinationV1().Leases(a.Namespace).Delete(ctx, l.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return 0, err
		}
	}
	return len(list.Items), nil
}

// Count counts the nodes that acknowledged the bundle with fingerprint fp: in their Lease, or, for a node
// without one, in the legacy annotations Status returns.
func Count(leases, legacy map[string]string, fp string) int {
	n := 0
	seen := map[string]bool{}
	for node, acked := range leases {
		seen[AckAnnotation(node)] = true
		if acked == fp {
			n++
		}
	}
	for key, acked := range legacy {
		if !seen[key] && acked == fp {
			n++
		}
	}
	return n
}
