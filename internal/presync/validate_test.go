package presync_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/presync"
)

// ValidationCase is a case of testdata/validation.json, which tests/chart renders too: the chart and the binary
// must accept and refuse the same values, with the same messages.
type ValidationCase struct {
	// Key is schedule, window, bandwidth or repositories.
	Key string `json:"key"`
	// Value is a string, or the list of repositories.
	Value json.RawMessage `json:"value"`
	// Error is the message, {key} standing for the key's name ("sync.schedule", "--schedule"); empty when the
	// value is accepted.
	Error string `json:"error"`
}

func loadValidationCases(t *testing.T) []ValidationCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "validation.json"))
	require.NoError(t, err)
	var cases []ValidationCase
	require.NoError(t, json.Unmarshal(data, &cases))
	require.NotEmpty(t, cases)
	return cases
}

// TestValidationTable checks every case of the shared table as the binary's flags are checked.
func TestValidationTable(t *testing.T) {
	t.Parallel()
	for _, tc := range loadValidationCases(t) {
		t.Run(caseName(tc.Key, tc.Value), func(t *testing.T) {
			t.Parallel()
			key := "--" + tc.Key
			var err error
			var s string
			if tc.Key != "repositories" {
				require.NoError(t, json.Unmarshal(tc.Value, &s))
			}
			switch tc.Key {
			case "schedule":
				_, err = presync.ParseSchedule(key, s)
			case "window":
				_, err = presync.ParseWindow(key, s)
			case "bandwidth":
				_, err = presync.ParseBandwidth(key, s)
			case "repositories":
				_, err = presync.ParseRepositories(key, string(tc.Value))
			default:
				t.Fatalf("unknown key %q", tc.Key)
			}
			if tc.Error == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.ErrorIs(t, err, presync.ErrInvalid)
			want := strings.ReplaceAll(tc.Error, "{key}", key)
			// The binary adds the parser's reason to a regular expression's message; the chart cannot know it.
			if strings.Contains(want, "is not a regular expression") {
				require.True(t, strings.HasPrefix(err.Error(), want+" ("), "got  %s\nwant %s (…)", err, want)
				return
			}
			require.EqualError(t, err, want)
		})
	}
}

// caseName names a case by its key and compact value, cut to a readable length.
func caseName(key string, value json.RawMessage) string {
	var b bytes.Buffer
	_ = json.Compact(&b, value)
	s := b.String()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return key + " " + s
}
