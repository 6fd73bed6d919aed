package presync_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connected-registry/connected-registry/internal/presync"
)

func TestConfigMapStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a missing status ConfigMap should fail the load naming it", func(t *testing.T) {
		t.Parallel()
		store := &presync.ConfigMapStore{Client: fake.NewSimpleClientset(), Namespace: "ns", Name: "cr-sync-status"}
		_, err := store.Load(ctx)
		require.ErrorIs(t, err, presync.ErrNoStatusConfigMap)
		require.ErrorContains(t, err, "ns/cr-sync-status")
	})

	t.Run("the ConfigMap the chart renders empty should load as an empty status", func(t *testing.T) {
		t.Parallel()
		client := fake.NewSimpleClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cr-sync-status", Namespace: "ns"}})
		store := &presync.ConfigMapStore{Client: client, Namespace: "ns", Name: "cr-sync-status"}
		st, err := store.Load(ctx)
		require.NoError(t, err)
		require.Empty(t, st.Repositories)
	})

	t.Run("a saved status should load back and keep the ConfigMap's labels and other keys", func(t *testing.T) {
		t.Parallel()
		client := fake.NewSimpleClientset(&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "cr-sync-status", Namespace: "ns", Labels: map[string]string{"app.kubernetes.io/component": "sync"}},
			Data:       map[string]string{"note": "kept"},
		})
		store := &presync.ConfigMapStore{Client: client, Namespace: "ns", Name: "cr-sync-status"}
		finished := time.Date(2026, 12, 5, 2, 3, 0, 0, time.UTC)
		next := finished.Add(23 * time.Hour)
		want := &presync.Status{
			Schedule: "0 2 * * *", Window: "PT3H", NextRun: &next,
			Run: presync.Run{Started: finished.Add(-3 * time.Minute), Finished: &finished, Result: presync.ResultIncomplete, TagsSynced: 1, TagsFailed: 1},
			Repositories: []*presync.RepositoryStatus{{
				Name: "app", LastSuccess: &finished,
				Tags:   map[string]presync.TagStatus{"v1": {Digest: "sha256:0123", Size: 42, Synced: finished, Checked: finished}},
				Failed: map[string]string{"nope": "not found at the parent"},
			}},
		}
		require.NoError(t, store.Save(ctx, want))
		got, err := store.Load(ctx)
		require.NoError(t, err)
		require.Equal(t, want.Repositories, got.Repositories)
		require.Equal(t, want.Run, got.Run)
		require.True(t, want.NextRun.Equal(*got.NextRun))

		cm, err := client.CoreV1().ConfigMaps("ns").Get(ctx, "cr-sync-status", metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, "kept", cm.Data["note"])
		require.Equal(t, "sync", cm.Labels["app.kubernetes.io/component"])
		require.Contains(t, cm.Data[presync.SummaryKey], "nope (not found at the parent)")
	})

	t.Run("an Event should be about the status ConfigMap, Warning for a problem", func(t *testing.T) {
		t.Parallel()
		client := fake.NewSimpleClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cr-sync-status", Namespace: "ns", UID: "u-1"}})
		store := &presync.ConfigMapStore{Client: client, Namespace: "ns", Name: "cr-sync-status"}
		_, err := store.Load(ctx)
		require.NoError(t, err)
		store.Event(ctx, true, presync.ReasonIncomplete, "app: tag nope (not found at the parent)")
		events, err := client.CoreV1().Events("ns").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, events.Items, 1)
		ev := events.Items[0]
		require.Equal(t, corev1.EventTypeWarning, ev.Type)
		require.Equal(t, presync.ReasonIncomplete, ev.Reason)
		require.Equal(t, "ConfigMap", ev.InvolvedObject.Kind)
		require.Equal(t, "cr-sync-status", ev.InvolvedObject.Name)
		require.Equal(t, "u-1", string(ev.InvolvedObject.UID))
	})
}
