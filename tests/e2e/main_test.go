package e2e_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// env is shared by every test of the run: one cluster, one parent registry.
var env *framework.Env

func TestMain(m *testing.M) {
	if !framework.Enabled() {
		fmt.Println("e2e: skipped; set E2E=1 (needs root and a few minutes; `make test` and `make e2e` set it)")
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	start := time.Now()
	var err error
	env, err = framework.Setup(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: set-up failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e: set-up done in %s\n", time.Since(start).Round(time.Second))
	code := m.Run()
	env.Teardown(ctx)
	fmt.Fprintf(os.Stderr, "e2e: total %s\n", time.Since(start).Round(time.Second))
	os.Exit(code)
}

func requireEnv(t *testing.T) {
	t.Helper()
	if env == nil {
		t.Skip("end-to-end tests need E2E=1")
	}
}
