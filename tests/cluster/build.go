package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// KubeLDFlags stamps the components with KubernetesVersion; without it they
// report v0.0.0-master, which breaks any chart's kubeVersion constraint.
// The date is fixed so that a rebuild of unchanged sources is a cache hit.
var KubeLDFlags = strings.Join([]string{
	"-s -w",
	"-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
	"-X k8s.io/component-base/version.gitMajor=1",
	"-X k8s.io/component-base/version.gitMinor=37",
	"-X k8s.io/component-base/version.gitTreeState=clean",
	"-X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z",
}, " ")

// Build builds the multi-call kube binary (unless KubeBin is set) and the
// pause binary into StateDir/bin, and links kubectl to kube. A cold build of
// kube takes about 13 minutes on 2 cores; an up-to-date binary is not relinked.
func (o *Options) Build(ctx context.Context) error {
	unlock, err := o.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return o.build(ctx)
}

func (o *Options) build(ctx context.Context) error {
	if err := os.MkdirAll(o.BinDir(), 0o755); err != nil {
		return err
	}
	if o.KubeBin == "" {
		if err := o.goBuild(ctx, "./cmd/kube", o.kube(), "-ldflags", KubeLDFlags); err != nil {
			return err
		}
	}
	if err := o.goBuild(ctx, "./cmd/pause", o.path("bin", "pause"), "-ldflags", "-s -w"); err != nil {
		return err
	}
	link := o.path("bin", "kubectl")
	if target, err := os.Readlink(link); err != nil || target != o.kube() {
		_ = os.Remove(link)
		if err := os.Symlink(o.kube(), link); err != nil {
			return err
		}
	}
	return nil
}

func (o *Options) goBuild(ctx context.Context, pkg, out string, extra ...string) error {
	if o.Source == "" {
		src, err := findSource()
		if err != nil {
			return err
		}
		o.Source = src
	}
	// -buildvcs=false: a commit elsewhere in the repository must not relink
	// the 160 MB binary. No -trimpath: go test and go vet of this module
	// (which compile cmd/kube's packages too) then share the build cache
	// with this build instead of compiling Kubernetes a second time.
	args := append([]string{"build", "-buildvcs=false", "-o", out}, extra...)
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.Source
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if os.Getenv("GOPROXY") == "" {
		cmd.Env = append(cmd.Env, "GOPROXY=https://proxy.golang.org")
	}
	cmd.Stdout, cmd.Stderr = o.Out, o.Out
	began := time.Now()
	o.logf("go build %s -> %s", pkg, out)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s in %s: %w", pkg, o.Source, err)
	}
	o.logf("built %s in %s", filepath.Base(out), time.Since(began).Round(time.Second))
	return nil
}
