package english_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/english"
)

func TestList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		items []string
		want  string
	}{
		{name: "no item should give nothing", want: ""},
		{name: "one item should stand alone", items: []string{"a"}, want: "a"},
		{name: "two items should be joined by and", items: []string{"a", "b"}, want: "a and b"},
		{name: "three items should be joined by a comma, then and", items: []string{"a", "b", "c"}, want: "a, b and c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, english.List(tc.items))
		})
	}
}
