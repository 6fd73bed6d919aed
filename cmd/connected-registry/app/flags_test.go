package app

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFlagSetEnvironmentTwins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    time.Duration
		wantB   bool
		wantErr string
	}{
		{name: "defaults should apply without flag or environment", want: time.Minute},
		{name: "the environment should set a value", env: map[string]string{"X_TIMEOUT": "90s", "X_DRY_RUN": "true"}, want: 90 * time.Second, wantB: true},
		{name: "a flag should win over the environment", env: map[string]string{"X_TIMEOUT": "90s", "X_DRY_RUN": "true"}, args: []string{"--timeout=5s", "--dry-run=false"}, want: 5 * time.Second},
		{
			name:    "an invalid environment value should name the variable and the flag",
			env:     map[string]string{"X_TIMEOUT": "soon"},
			wantErr: `environment variable X_TIMEOUT="soon" is not a valid value of --timeout: want a duration like 30s, 5m or 2h`,
		},
		{
			name:    "an invalid boolean in the environment should be refused even when the flag is given",
			env:     map[string]string{"X_DRY_RUN": "maybe"},
			args:    []string{"--dry-run"},
			wantErr: `environment variable X_DRY_RUN="maybe" is not a valid value of --dry-run: want true or false`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFlagSet("x", func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }, io.Discard)
			var d time.Duration
			var b bool
			fs.DurationVar(&d, "timeout", "X_TIMEOUT", time.Minute, "how long to wait")
			fs.BoolVar(&b, "dry-run", "X_DRY_RUN", false, "change nothing")
			err := fs.Parse(tt.args)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, d)
			require.Equal(t, tt.wantB, b)
		})
	}
}

func TestFlagSetListsAndInts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    []string
		wantN   int
		wantErr string
	}{
		{name: "defaults should apply without flag or environment", want: []string{"a"}, wantN: 256},
		{name: "the environment should give a comma-separated list", env: map[string]string{"X_DNS": "b, c,,d", "X_SIZE": "2048"}, want: []string{"b", "c", "d"}, wantN: 2048},
		{name: "flags should replace the environment's list and may repeat", env: map[string]string{"X_DNS": "b"}, args: []string{"--dns=c,d", "--dns", "e"}, want: []string{"c", "d", "e"}, wantN: 256},
		{name: "an invalid number should name the flag", args: []string{"--size=big"}, wantErr: `invalid value "big" for flag -size: want a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFlagSet("x", func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }, io.Discard)
			var list []string
			var n int
			fs.ListVar(&list, "dns", "X_DNS", []string{"a"}, "names")
			fs.IntVar(&n, "size", "X_SIZE", 256, "bits")
			err := fs.Parse(tt.args)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, list)
			require.Equal(t, tt.wantN, n)
		})
	}
}
