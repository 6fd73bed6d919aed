// Package bundle is the trust bundle protocol between the registry pod and the nodes' trust agents.
//
// The registry pod's tls-reloader publishes the CA of the registry's TLS Secret into the trust bundle ConfigMap,
// under the key ca.crt, with the bundle's fingerprint as an annotation. Each node's trust agent reads the bundle
// from there (it has no access to the Secret), installs it on its node, and acknowledges it: it sets the
// annotation AckAnnotation(node) to the fingerprint of the bundle it installed. The reloader serves a certificate
// from a new CA only once every node of the agents' DaemonSet has acknowledged a bundle that verifies it.
package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Annotations and the data key of the trust bundle ConfigMap.
const (
	// AckAnnotationPrefix + node holds the fingerprint of the bundle the node's agent has installed.
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

// Status reads the published bundle and counts the nodes that acknowledged it. The bundle is empty when none is
// published yet.
func (c ConfigMap) Status(ctx context.Context) (bundle []byte, acked int, err error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("reading ConfigMap %s: %w", c.Name, err)
	}
	bundle = []byte(cm.Data[Key])
	fp := Fingerprint(bundle)
	for k, v := range cm.Annotations {
		if strings.HasPrefix(k, AckAnnotationPrefix) && v == fp {
			acked++
		}
	}
	return bundle, acked, nil
}

// Read returns the published bundle, and the fingerprint node last acknowledged (empty when none). It fails
// while no bundle is published.
func (c ConfigMap) Read(ctx context.Context, node string) (bundle []byte, acked string, err error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return nil, "", err
	}
	if cm.Data[Key] == "" {
		return nil, "", fmt.Errorf("ConfigMap %s has no %s yet: the registry pod publishes it when it starts", c.Name, Key)
	}
	return []byte(cm.Data[Key]), cm.Annotations[AckAnnotation(node)], nil
}

// Ack records that node has installed the bundle with fingerprint fp. It patches only the node's own annotation,
// so agents of different nodes never conflict.
func (c ConfigMap) Ack(ctx context.Context, node, fp string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AckAnnotation(node), fp)
	_, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Patch(ctx, c.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
