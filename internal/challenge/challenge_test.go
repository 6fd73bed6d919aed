package challenge_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/challenge"
)

func TestParseAndFormat(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, in, out string }{
		{"a Bearer challenge should keep its parameters in order", `Bearer realm="https://r.example/token",service="r.example",scope="repository:a:pull"`,
			`Bearer realm="https://r.example/token",service="r.example",scope="repository:a:pull"`},
		{"unquoted values and spaces should be read", `bearer   realm=https://r.example/token , service=r.example`, `bearer realm="https://r.example/token",service="r.example"`},
		{"two challenges in one value should both be kept", `Basic realm="x", Bearer realm="https://r.example/t",service="s"`,
			`Basic realm="x", Bearer realm="https://r.example/t",service="s"`},
		{"escapes in a quoted string should survive", `Bearer realm="https://r.example/t",error="a \"quoted\" word"`, `Bearer realm="https://r.example/t",error="a \"quoted\" word"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs, err := challenge.Parse(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.out, challenge.Format(cs))
		})
	}
	for _, bad := range []string{`Bearer realm="unterminated`, `=x`, `Bearer realm=`} {
		_, err := challenge.Parse(bad)
		require.Error(t, err, bad)
	}
}
