package cli_test

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/cli"
)

func TestFlagSet(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want []string
		str  string
		flag bool
		err  string
	}{
		{name: "defaults apply with neither flag nor environment", str: "def"},
		{name: "the environment sets a flag", env: map[string]string{"X_STR": "env", "X_LIST": "a, b", "X_BOOL": "true"},
			str: "env", want: []string{"a", "b"}, flag: true},
		{name: "the command line wins over the environment, repeated flags replace the environment's list",
			env: map[string]string{"X_STR": "env", "X_LIST": "a,b"}, args: []string{"--str=cli", "--list=c", "--list=d"},
			str: "cli", want: []string{"c", "d"}},
		{name: "an environment value that is not valid should fail naming the variable", env: map[string]string{"X_BOOL": "maybe"},
			err: `environment variable X_BOOL="maybe" is not a valid value of --bool: want true or false`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := cli.NewFlagSet("x", cli.MapEnv(tc.env), io.Discard)
			var s string
			var l []string
			var b bool
			f.StringVar(&s, "str", "X_STR", "def", "a string")
			f.StringsVar(&l, "list", "X_LIST", "a list")
			f.BoolVar(&b, "bool", "X_BOOL", false, "a bool")
			err := f.Parse(tc.args)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.str, s)
			require.Equal(t, tc.want, l)
			require.Equal(t, tc.flag, b)
		})
	}
}
