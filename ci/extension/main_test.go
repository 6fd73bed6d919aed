package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRun(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command should fail with the usage", nil, "give a command: stage or check"},
		{"an unknown command should fail", []string{"publish"}, `unknown command "publish"`},
		{"stage without image lists should fail", []string{"stage"}, "give --images"},
		{"stage with a missing image list should fail", []string{"stage", "--images", "/nonexistent/images.txt"}, "no such file"},
		{"check of a directory without a bundle should fail", []string{"check", "--dir", "/nonexistent"}, "the bundle is not ready for the packaging tool"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, noEnv, &out, &errOut)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
