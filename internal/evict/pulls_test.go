package evict

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

// notification is an envelope as Distribution v3 posts it (trimmed to the fields it always sets).
const notification = `{"events":[
 {"id":"1","timestamp":"2026-12-01T10:00:00Z","action":"pull","target":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:i","size":300,"repository":"lib/app","url":"x","tag":"1.0"},"request":{"method":"GET"},"actor":{},"source":{}},
 {"id":"2","timestamp":"2026-12-01T10:00:01Z","action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:m","size":500,"repository":"lib/app"},"request":{"method":"GET"},"actor":{},"source":{}},
 {"id":"3","timestamp":"2026-12-01T10:00:02Z","action":"pull","target":{"mediaType":"application/octet-stream","digest":"sha256:layer","size":5000,"repository":"lib/app"},"request":{"method":"GET"},"actor":{},"source":{}},
 {"id":"4","timestamp":"2026-12-01T10:00:03Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:p","repository":"lib/app"},"request":{"method":"PUT"},"actor":{},"source":{}}
]}`

func post(t *testing.T, h http.Handler, contentType, body string) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, EventsPath, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestRecorderKeepsTheLastPullOfManifestsAndTags(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := fake.NewSimpleClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cr-cache-pulls"},
		Data: map[string]string{PullsKey: `{"since":"2026-11-01T00:00:00Z","last":{"lib/app:1.0":"2026-12-02T00:00:00Z","old@sha256:o":"2026-11-02T00:00:00Z"}}`}})
	store := &ConfigMapPullStore{Client: cs, Namespace: "ns", Name: "cr-cache-pulls"}
	rec := &Recorder{Store: store, Clock: &fixedClock{time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}}

	require.Equal(t, http.StatusOK, post(t, rec, eventsMediaType, notification))
	require.Equal(t, http.StatusUnsupportedMediaType, post(t, rec, "application/json", notification))
	require.Equal(t, http.StatusBadRequest, post(t, rec, eventsMediaType, "{"))
	require.NoError(t, rec.Flush(ctx))

	p, err := store.Load(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]time.Time{
		"lib/app@sha256:i": time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		"lib/app@sha256:m": time.Date(2026, 12, 1, 10, 0, 1, 0, time.UTC),
		// The stored pull of the tag is later than the new one: the later wins.
		"lib/app:1.0":  time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC),
		"old@sha256:o": time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC),
	}, p.Last, "blob pulls and pushes should not be recorded")
	require.Equal(t, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), p.Since, "recording began with the earlier records")
	require.Equal(t, []string{"lib/app@sha256:i", "lib/app@sha256:m", "old@sha256:o"}, p.Refs())
}

func TestRecorderKeepsPullsAFailedFlushCouldNotWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := fake.NewSimpleClientset()
	store := &ConfigMapPullStore{Client: cs, Namespace: "ns", Name: "cr-cache-pulls"}
	rec := &Recorder{Store: store}
	require.Equal(t, http.StatusOK, post(t, rec, eventsMediaType, notification))
	require.ErrorIs(t, rec.Flush(ctx), ErrNoPullsConfigMap)

	_, err := cs.CoreV1().ConfigMaps("ns").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cr-cache-pulls"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, rec.Flush(ctx))
	p, err := store.Load(ctx)
	require.NoError(t, err)
	require.Len(t, p.Last, 3)
}

func TestPullRecordsAreTrimmedToTheNewest(t *testing.T) {
	t.Parallel()
	p := &Pulls{Last: map[string]time.Time{"a@x": t0, "b@x": t0.Add(time.Hour), "c@x": t0.Add(2 * time.Hour)}}
	p.trim(2)
	require.Equal(t, []string{"b@x", "c@x"}, p.Refs())
}
