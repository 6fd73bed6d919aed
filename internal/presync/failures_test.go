package presync

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConsecutiveFailures(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	before, after := started.Add(-24*time.Hour), started.Add(time.Minute)
	for _, tt := range []struct {
		name        string
		rs          RepositoryStatus
		unreachable bool
		want        int
	}{
		{name: "a repository the run could not sync should count one more failure",
			rs: RepositoryStatus{ConsecutiveFailures: 2, Error: "outside the sync token's scope", LastSuccess: &before}, want: 3},
		{name: "a failed tag should count as a failure of the repository",
			rs: RepositoryStatus{Failed: map[string]string{"v1": "not found"}}, want: 1},
		{name: "a registry out of reach should fail every repository",
			rs: RepositoryStatus{ConsecutiveFailures: 1}, unreachable: true, want: 2},
		{name: "a repository synced whole in this run should start again at 0",
			rs: RepositoryStatus{ConsecutiveFailures: 4, LastSuccess: &after}, want: 0},
		{name: "a repository the window cut short should keep its count",
			rs: RepositoryStatus{ConsecutiveFailures: 4, LastSuccess: &before, Pending: []string{"v2"}}, want: 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := tt.rs
			rs.countRun(started, tt.unreachable)
			require.Equal(t, tt.want, rs.ConsecutiveFailures)
		})
	}
}
