package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
	"github.com/connected-registry/connected-registry/internal/connstring"
)

// TestChartJobArgs feeds the args of every hook Job the chart renders, in every scenario's golden file, to the
// binary: the flags must parse and validate, so the chart and the binary cannot drift apart. Only building the
// API client fails here, from a kubeconfig that does not exist. It also holds the parent gate's Go default for
// --listen to the address the chart gives it.
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
			type container struct {
				Name string
				Args []string
				Env  []struct {
					Name      string
					Value     string
					ValueFrom *struct {
						FieldRef *struct {
							FieldPath string `json:"fieldPath"`
						} `json:"fieldRef"`
					} `json:"valueFrom"`
				}
			}
			var job struct {
				Kind     string
				Metadata struct {
					Name   string
					Labels map[string]string
				}
				StringData map[string]string `json:"stringData"`
				Spec       struct {
					Template struct {
						Spec struct {
							Containers     []container
							InitContainers []container `json:"initContainers"`
						}
					}
				}
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &job), "%s", golden)
			if cs, ok := job.StringData["connectionString"]; ok && job.Kind == "Secret" && strings.HasSuffix(job.Metadata.Name, "-preflight") {
				// The hook's copy is the connection string: the parent check authenticates with its sync token.
				_, err := connstring.Parse(cs)
				require.NoError(t, err, "%s: the preflight's connection string must parse", golden)
				seen["preflight connection string"]++
			}
			if job.Kind == "Deployment" {
				for _, c := range job.Spec.Template.Spec.InitContainers {
					if c.Name == "parent-gate" {
						require.Contains(t, c.Args, "--listen="+app.DefaultGateListen, "%s: the parent gate's default --listen is not the chart's", golden)
						seen["parent-gate"]++
					}
					if c.Name == "token-server" {
						args := append([]string{"connected-registry"}, c.Args...)
						args = append(args, "--kubeconfig=/nonexistent/kubeconfig")
						r := execute(t, nil, "", args...)
						require.ErrorContains(t, r.err, "configuring the API client: ", "%s: the token server's args %q", golden, c.Args)
						seen["token-server"]++
					}
				}
			}
			// The chart's own Jobs run this binary; their image's name is the chart's to choose.
			if job.Kind != "Job" || len(job.Spec.Template.Spec.Containers) == 0 || job.Metadata.Labels["app.kubernetes.io/part-of"] != "connected-registry" {
				continue
			}
			c := job.Spec.Template.Spec.Containers[0]
			name := filepath.Base(golden) + " " + job.Metadata.Name
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				args := append([]string{"connected-registry"}, c.Args...)
				args = append(args, "--kubeconfig=/nonexistent/kubeconfig")
				// The environment as the kubelet gives it: fields of the pod get a stand-in value.
				env := map[string]string{}
				for _, e := range c.Env {
					env[e.Name] = e.Value
					if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
						env[e.Name] = "from-" + e.ValueFrom.FieldRef.FieldPath
					}
				}
				r := execute(t, env, "", args...)
				require.Error(t, r.err)
				require.Contains(t, r.err.Error(), "configuring the API client: ", "args %q", c.Args)
			})
			seen[c.Args[0]]++
		}
	}
	require.Positive(t, seen["preflight"], "no scenario renders the preflight Job")
	require.Positive(t, seen["certgen"], "no scenario renders the certgen Job")
	require.Positive(t, seen["preflight connection string"], "no scenario hands the preflight a connection string")
	require.Positive(t, seen["parent-gate"], "no scenario renders the parent gate")
	require.Positive(t, seen["token-server"], "no scenario renders the token server")
}
