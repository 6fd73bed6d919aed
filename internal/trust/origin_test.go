package trust_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connected-registry/connected-registry/internal/trust"
)

func TestOwnPod(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "connected-registry", Name: "cr-connected-registry-trust-cleanup-x7k2p"},
		Spec: corev1.PodSpec{PriorityClassName: "site-critical", ImagePullSecrets: []corev1.LocalObjectReference{{Name: "mirror-pull"}}, Containers: []corev1.Container{
			{Name: "istio-proxy", Image: "istio/proxyv2:1.0"},
			{Name: "cleanup", Image: "mirror.example.com/connected-registry/connected-registry@sha256:" + sha},
		}},
	}
	client := fake.NewClientset(pod)
	ctx := context.Background()

	o, err := trust.OwnPod(ctx, client, pod.Namespace, pod.Name, "cleanup")
	require.NoError(t, err)
	require.Equal(t, trust.Origin{
		Image:            "mirror.example.com/connected-registry/connected-registry@sha256:" + sha,
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "mirror-pull"}}, PriorityClassName: "site-critical",
	}, o, "the image as the Job's pod runs it, mirror and digest included, and how it pulls and ranks")

	_, err = trust.OwnPod(ctx, client, pod.Namespace, pod.Name, "remove")
	require.EqualError(t, err, `pod connected-registry/cr-connected-registry-trust-cleanup-x7k2p has no container "remove" to take the image from`)
	_, err = trust.OwnPod(ctx, client, pod.Namespace, "gone", "cleanup")
	require.ErrorContains(t, err, `reading this pod connected-registry/gone for its image: pods "gone" not found`)
}

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
