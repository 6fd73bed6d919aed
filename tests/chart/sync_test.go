package chart_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// syncCase is a case of internal/presync/testdata/validation.json, which the binary's checks are tested against
// too: the chart and the binary accept and refuse the same values with the same messages.
type syncCase struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
}

// syncValues are base values with the pre-sync on, holding one tag, and extra sync values.
func syncValues(extra map[string]any) map[string]any {
	s := map[string]any{"enabled": true, "repositories": []any{map[string]any{"name": "hello-world", "tags": []any{"latest"}}}}
	for k, v := range extra {
		s[k] = v
	}
	return with(map[string]any{"sync": s})
}

func TestSyncValidationTable(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "internal", "presync", "testdata", "validation.json"))
	require.NoError(t, err)
	var cases []syncCase
	require.NoError(t, json.Unmarshal(data, &cases))
	require.NotEmpty(t, cases)
	for _, tc := range cases {
		t.Run(caseName(tc.Key, tc.Value), func(t *testing.T) {
			t.Parallel()
			var value any
			require.NoError(t, json.Unmarshal(tc.Value, &value))
			_, err := render(t, syncValues(map[string]any{tc.Key: value}), chartrender.CertManagerAPIVersion)
			if tc.Error == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), strings.ReplaceAll(tc.Error, "{key}", "sync."+tc.Key))
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
