package presync

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBudgetAdmit(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC)

	t.Run("without a window every fetch should start", func(t *testing.T) {
		t.Parallel()
		now := start
		b := newBudget(1<<20, time.Time{}, func() time.Time { return now })
		require.True(t, b.admit(1<<40))
	})

	t.Run("with a cap, a blob should start only if it can end before the window does", func(t *testing.T) {
		t.Parallel()
		now := start
		b := newBudget(1<<20, start.Add(10*time.Second), func() time.Time { return now }) // 1 MiB/s, 10 s left
		require.False(t, b.admit(20<<20), "20 MiB at 1 MiB/s cannot end within 10 s")
		require.True(t, b.admit(4<<20), "4 MiB at 1 MiB/s ends within 10 s")
		require.False(t, b.admit(4<<20), "a second 4 MiB after the first in flight cannot end within 10 s")
		b.progress(4 << 20)
		b.done(4<<20, 4<<20)
		now = now.Add(4 * time.Second)
		require.True(t, b.admit(4<<20), "4 MiB with 6 s left")
		b.done(4<<20, 0)
	})

	t.Run("nothing should start once the window has ended", func(t *testing.T) {
		t.Parallel()
		now := start.Add(time.Minute)
		b := newBudget(0, start.Add(time.Minute), func() time.Time { return now })
		require.False(t, b.admit(1))
	})

	t.Run("without a cap, the rate measured should decide once it is known", func(t *testing.T) {
		t.Parallel()
		now := start
		b := newBudget(0, start.Add(time.Minute), func() time.Time { return now })
		require.True(t, b.admit(100<<20), "the rate is unknown: the first blob starts")
		now = now.Add(2 * time.Second)
		b.progress(2 << 20) // 1 MiB/s measured
		b.done(100<<20, 2<<20)
		require.False(t, b.admit(100<<20), "100 MiB at the 1 MiB/s measured cannot end within 58 s")
		require.True(t, b.admit(10<<20))
	})
}
