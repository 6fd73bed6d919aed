package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
	env := append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if os.Getenv("GOPROXY") == "" {
		env = append(env, "GOPROXY=https://proxy.golang.org")
	}
	began := time.Now()
	o.logf("go build %s -> %s", pkg, out)
	// -v names each package as it is compiled (cached ones are not): counted against the package's
	// dependencies, that is the progress of a cold build, which takes minutes.
	list := exec.CommandContext(ctx, "go", "list", "-deps", pkg)
	list.Dir, list.Env = o.Source, env
	deps, _ := list.Output()
	progress := &buildProgress{out: o.Out, pkg: pkg, total: bytes.Count(deps, []byte("\n")), began: began, every: ProgressInterval}
	args := append([]string{"build", "-v", "-buildvcs=false", "-o", out}, extra...)
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = o.Source, env
	cmd.Stdout, cmd.Stderr = o.Out, progress
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s in %s: %w", pkg, o.Source, err)
	}
	o.logf("built %s in %s (%d packages compiled, the rest cached)", filepath.Base(out), time.Since(began).Round(time.Second), progress.compiled)
	return nil
}

// ProgressInterval is how often a long build reports how far it got.
var ProgressInterval = 30 * time.Second

// buildProgress reads `go build -v`'s stderr: package paths are counted and reported every interval, anything
// else (compiler errors) is passed on.
type buildProgress struct {
	out         io.Writer
	pkg         string
	total       int
	began, last time.Time
	every       time.Duration
	compiled    int
	partial     []byte
}

func (p *buildProgress) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		if line == "" || strings.ContainsAny(line, " \t:") || strings.HasPrefix(line, "#") {
			fmt.Fprintln(p.out, line)
			continue
		}
		p.compiled++
		if now := time.Now(); now.Sub(p.last) >= p.every && now.Sub(p.began) >= p.every {
			p.last = now
			fmt.Fprintf(p.out, "cluster: go build %s: %d of %d packages compiled, %s\n", p.pkg, p.compiled, p.total, now.Sub(p.began).Round(time.Second))
		}
	}
}
