package trust

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Origin is what the cleanup's per-node pods take from the cleanup Job's own pod, so that whatever rewrote the
// Job (an image-mirror overlay, a digest pin, the chart's imagePullSecrets and priorityClassName) holds for them
// too, with no image passed as an argument to rewrite as well.
type Origin struct {
	Image             string
	ImagePullSecrets  []corev1.LocalObjectReference
	PriorityClassName string
}

// OwnPod reads pod namespace/name and returns its Origin, the image being that of container.
func OwnPod(ctx context.Context, client kubernetes.Interface, namespace, name, container string) (Origin, error) {
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Origin{}, fmt.Errorf("reading this pod %s/%s for its image: %w", namespace, name, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == container {
			return Origin{Image: c.Image, ImagePullSecrets: pod.Spec.ImagePullSecrets, PriorityClassName: pod.Spec.PriorityClassName}, nil
		}
	}
	return Origin{}, fmt.Errorf("pod %s/%s has no container %q to take the image from", namespace, name, container)
}
