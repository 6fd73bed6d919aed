package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// chartDir makes a chart directory with a values.yaml, and returns options pointing at it.
func chartDir(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	return Options{
		ValuesPath: write("values.yaml", "tls:\n  # -- Certificate.\n  crt: \"\"\n"),
		SchemaPath: filepath.Join(dir, "values.schema.json"),
	}
}

func noEnv(string) string { return "" }

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// prepare changes the chart directory after the files were generated once.
		prepare func(t *testing.T, o Options)
		check   bool
		wantErr string
		wantOut []string
	}{
		{
			name:    "check passes when the generated files are up to date",
			prepare: func(*testing.T, Options) {},
			check:   true,
		},
		{
			name: "check fails naming the schema when values.yaml gained a key, and shows the new lines",
			prepare: func(t *testing.T, o Options) {
				require.NoError(t, os.WriteFile(o.ValuesPath, []byte("tls:\n  # -- Certificate.\n  crt: \"\"\n  # -- Key.\n  key: \"\"\n"), 0o644))
			},
			check:   true,
			wantErr: "values.schema.json is out of date; run `go run ./ci/valuesdoc` and commit the result: ",
			wantOut: []string{"values.schema.json (on disk)", "values.schema.json (generated)", "+        \"key\": {"},
		},
		{
			name: "check fails naming the schema when it is missing",
			prepare: func(t *testing.T, o Options) {
				require.NoError(t, os.Remove(o.SchemaPath))
			},
			check:   true,
			wantErr: "values.schema.json",
			wantOut: []string{"values.schema.json: missing"},
		},
		{
			name: "check leaves a stale file untouched",
			prepare: func(t *testing.T, o Options) {
				require.NoError(t, os.WriteFile(o.SchemaPath, []byte("{}\n"), 0o644))
			},
			check:   true,
			wantErr: "values.schema.json",
		},
		{
			name: "generate rewrites a stale file",
			prepare: func(t *testing.T, o Options) {
				require.NoError(t, os.WriteFile(o.SchemaPath, []byte("{}\n"), 0o644))
			},
		},
		{
			name: "a values.yaml error names the file, the key and its line",
			prepare: func(t *testing.T, o Options) {
				require.NoError(t, os.WriteFile(o.ValuesPath, []byte("tls:\n  crt: \"\"\n"), 0o644))
			},
			wantErr: `values.yaml: line 2: key "tls.crt": key has no "# --" description`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := chartDir(t)
			require.NoError(t, o.Run(context.Background(), &bytes.Buffer{}))
			tt.prepare(t, o)
			before, _ := os.ReadFile(o.SchemaPath)

			o.Check = tt.check
			var out bytes.Buffer
			err := o.Run(context.Background(), &out)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			for _, want := range tt.wantOut {
				require.Contains(t, out.String(), want)
			}
			after, _ := os.ReadFile(o.SchemaPath)
			if tt.check {
				require.Equal(t, string(before), string(after), "-check must not write")
				return
			}
			if tt.wantErr == "" {
				o.Check = true
				require.NoError(t, o.Run(context.Background(), &bytes.Buffer{}), "after generating, check passes")
			}
		})
	}
}

func TestRunFlagsAndEnvironment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    func(o Options) []string
		env     func(o Options) map[string]string
		wantErr string
	}{
		{
			name: "flags choose every path and -check reports missing files",
			args: func(o Options) []string {
				return []string{"-values", o.ValuesPath, "-schema", o.SchemaPath, "-check"}
			},
			wantErr: "out of date",
		},
		{
			name: "environment twins stand in for the flags",
			env: func(o Options) map[string]string {
				return map[string]string{
					"VALUESDOC_VALUES": o.ValuesPath, "VALUESDOC_SCHEMA": o.SchemaPath, "VALUESDOC_CHECK": "true",
				}
			},
			wantErr: "out of date",
		},
		{
			name:    "an unparsable VALUESDOC_CHECK fails naming the value",
			env:     func(Options) map[string]string { return map[string]string{"VALUESDOC_CHECK": "maybe"} },
			wantErr: `parse VALUESDOC_CHECK="maybe"`,
		},
		{
			name:    "a positional argument is refused",
			args:    func(Options) []string { return []string{"extra"} },
			wantErr: `unexpected argument "extra"`,
		},
		{
			name:    "an empty path is refused",
			args:    func(Options) []string { return []string{"-values="} },
			wantErr: "flag -values must not be empty",
		},
		{
			name:    "an unknown flag is refused",
			args:    func(Options) []string { return []string{"-nope"} },
			wantErr: "flag provided but not defined: -nope",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := chartDir(t)
			var args []string
			if tt.args != nil {
				args = tt.args(o)
			}
			getenv := noEnv
			if tt.env != nil {
				env := tt.env(o)
				getenv = func(k string) string { return env[k] }
			}
			err := run(context.Background(), args, getenv, &bytes.Buffer{}, &bytes.Buffer{})
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-h"}, noEnv, &bytes.Buffer{}, &stderr)
	require.ErrorIs(t, err, flag.ErrHelp)
	for _, name := range []string{"-values", "-schema", "-check", "VALUESDOC_CHECK", DefaultValues} {
		require.Contains(t, stderr.String(), name)
	}
}

func TestUnifiedDiff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, a, b, want string
	}{
		{
			name: "one changed line is shown with three lines of context",
			a:    "1\n2\n3\n4\n5\n6\n7\n8\n9\n",
			b:    "1\n2\n3\n4\nfive\n6\n7\n8\n9\n",
			want: "--- a\n+++ b\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n",
		},
		{
			name: "changes far apart make two hunks",
			a:    strings.Repeat("x\n", 3) + "a\n" + strings.Repeat("y\n", 10) + "b\n",
			b:    strings.Repeat("x\n", 3) + "A\n" + strings.Repeat("y\n", 10) + "B\n",
			want: "--- a\n+++ b\n@@ -1,7 +1,7 @@\n x\n x\n x\n-a\n+A\n y\n y\n y\n@@ -12,4 +12,4 @@\n y\n y\n y\n-b\n+B\n",
		},
		{
			name: "an added line at the end",
			a:    "a\n",
			b:    "a\nb\n",
			want: "--- a\n+++ b\n@@ -1,1 +1,2 @@\n a\n+b\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, unifiedDiff("a", "b", tt.a, tt.b))
		})
	}
}
