package trust

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// OwnImage is the image of container in pod namespace/name, as the API server holds it: the cleanup's per-node
// pods run the image the cleanup Job itself runs, so whatever rewrote the Job's image (an image-mirror overlay,
// a digest pin) rewrote theirs too, with no image passed as an argument to rewrite as well.
func OwnImage(ctx context.Context, client kubernetes.Interface, namespace, name, container string) (string, error) {
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading this pod %s/%s for its image: %w", namespace, name, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == container {
			return c.Image, nil
		}
	}
	return "", fmt.Errorf("pod %s/%s has no container %q to take the image from", namespace, name, container)
}
