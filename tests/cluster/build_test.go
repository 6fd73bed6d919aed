package cluster

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestBuildProgress: package lines of `go build -v` are counted and reported once an interval has passed, in
// whatever pieces they arrive; compiler errors and download lines are passed on as they are.
func TestBuildProgress(t *testing.T) {
	var out bytes.Buffer
	p := &buildProgress{out: &out, pkg: "./cmd/kube", total: 3, began: time.Now().Add(-time.Minute), every: time.Nanosecond}
	for _, chunk := range []string{"k8s.io/api/core", "/v1\ngo: downloading k8s.io/x v1.0.0\n", "k8s.io/kubernetes/pkg/a\n# k8s.io/kubernetes/pkg/b\npkg/b/b.go:3:1: syntax error\n"} {
		if _, err := p.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if p.compiled != 2 {
		t.Fatalf("compiled %d packages, want 2", p.compiled)
	}
	got := out.String()
	for _, want := range []string{
		"cluster: go build ./cmd/kube: 1 of 3 packages compiled, 1m0s\n",
		"go: downloading k8s.io/x v1.0.0\n",
		"cluster: go build ./cmd/kube: 2 of 3 packages compiled",
		"# k8s.io/kubernetes/pkg/b\npkg/b/b.go:3:1: syntax error\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
