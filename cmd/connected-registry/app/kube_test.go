package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUserAgentNamesTheCommand: every request says which command of connected-registry makes it.
func TestUserAgentNamesTheCommand(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	agents := map[string]bool{}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents[r.UserAgent()] = true
		mu.Unlock()
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`, http.StatusForbidden)
	}))
	defer api.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, api.URL), 0o600))
	r := execute(t, nil, "", "connected-registry", "certgen", "--namespace=x", "--secret=s", "--ip=10.96.0.50", "--kubeconfig="+kubeconfig)
	require.ErrorContains(t, r.err, "reading Secret x/s-ca")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, map[string]bool{"connected-registry/certgen": true}, agents)
}

// TestTimeoutHelp: --timeout speaks of the Job only for the commands that run as Jobs.
func TestTimeoutHelp(t *testing.T) {
	t.Parallel()
	for command, want := range map[string]string{
		"preflight":    "keep it below the Job's activeDeadlineSeconds",
		"certgen":      "keep it below the Job's activeDeadlineSeconds",
		"cleanup":      "keep it below the Job's activeDeadlineSeconds",
		"tls-reloader": "limit of each request to the API server",
	} {
		r := execute(t, nil, "", "connected-registry", command, "--help")
		require.Contains(t, r.out, want, command)
		if command == "tls-reloader" {
			require.NotContains(t, r.out, "Job", "tls-reloader is a long-running sidecar")
		}
	}
}
