package cmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/connected-registry/connected-registry/internal/connstring"
)

// TestChartJobArgs feeds the args of every hook Job the chart renders, in every scenario's golden file, to the
// binary: the flags must parse and validate, so the chart and the binary cannot drift apart. Only building the
// API client fails here, from a kubeconfig that does not exist.
func TestChartJobArgs(t *testing.T) {
	t.Parallel()
	goldens, err := filepath.Glob(filepath.Join("..", "..", "..", "tests", "chart", "testdata", "golden", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, goldens)
	seen := map[string]int{}
	for _, golden := range goldens {
		raw, err := os.ReadFile(golden)
		require.NoError(t, err)
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			if strings.HasPrefix(strings.TrimSpace(doc), "# NOTES.txt") {
				continue
			}
			var job struct {
				Kind       string
				Metadata   struct{ Name string }
				StringData map[string]string `json:"stringData"`
				Spec       struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Image string
								Args  []string
							}
						}
					}
				}
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &job), "%s", golden)
			if cs, ok := job.StringData["connectionString"]; ok && job.Kind == "Secret" && strings.HasSuffix(job.Metadata.Name, "-preflight") {
				// The hook's copy is masked, yet parses exactly as the real one.
				require.NotContains(t, cs, "not-a-real-password", "%s: the preflight Secret holds the sync token password", golden)
				_, err := connstring.Parse(cs)
				require.NoError(t, err, "%s: the masked connection string must parse like the original", golden)
				seen["masked connection string"]++
			}
			if job.Kind != "Job" || len(job.Spec.Template.Spec.Containers) == 0 {
				continue
			}
			c := job.Spec.Template.Spec.Containers[0]
			if !strings.Contains(c.Image, "/connected-registry:") {
				continue
			}
			name := filepath.Base(golden) + " " + job.Metadata.Name
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				args := append([]string{"hooks"}, c.Args...)
				args = append(args, "--kubeconfig=/nonexistent/kubeconfig")
				r := execute(t, nil, "", args...)
				require.Error(t, r.err)
				require.Contains(t, r.err.Error(), "configuring the API client: ", "args %q", c.Args)
			})
			seen[c.Args[0]]++
		}
	}
	require.Positive(t, seen["preflight"], "no scenario renders the preflight Job")
	require.Positive(t, seen["certgen"], "no scenario renders the certgen Job")
	require.Positive(t, seen["masked connection string"], "no scenario hands the preflight a connection string")
}
