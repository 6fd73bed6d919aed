package imagebuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Builder runs the Go toolchain. Its zero value uses `go` from PATH with the process environment and logs
// nothing.
type Builder struct {
	// Go is the go command; empty means "go".
	Go string
	// Env is the environment of the go command; nil means os.Environ(). CGO_ENABLED, GOOS, GOARCH and GOARM
	// are always set per platform.
	Env []string
	// Parallelism is passed as `go build -p`; 0 keeps Go's default (the number of CPUs).
	Parallelism int
	// Log receives one line per compiled binary; nil discards.
	Log io.Writer
}

func (b *Builder) goCmd() string {
	if b.Go == "" {
		return "go"
	}
	return b.Go
}

func (b *Builder) logf(format string, args ...any) {
	if b.Log != nil {
		fmt.Fprintf(b.Log, format+"\n", args...)
	}
}

// goEnv returns the environment of a go command for platform p.
func (b *Builder) goEnv(p *v1.Platform) []string {
	base := b.Env
	if base == nil {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+4)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CGO_ENABLED", "GOOS", "GOARCH", "GOARM":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "CGO_ENABLED=0")
	if p != nil {
		env = append(env, "GOOS="+p.OS, "GOARCH="+p.Architecture)
		if p.Architecture == "arm" && p.Variant != "" {
			env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
		}
	}
	return env
}

// run runs the go command in dir and returns its standard output; its standard error is part of the error.
func (b *Builder) run(ctx context.Context, dir string, p *v1.Platform, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, b.goCmd(), args...)
	cmd.Dir = dir
	cmd.Env = b.goEnv(p)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s (in %s): %w: %s", b.goCmd(), strings.Join(args, " "), dir, err,
			strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// tempModule creates a main module in a new temporary directory that requires module ("path@version") and has
// the go.sum entries that building pkg needs. The caller removes the directory. The go.mod and go.sum that
// `go get` resolves are kept in the user's cache directory, so later builds neither repeat the resolution nor
// need the checksum database.
func (b *Builder) tempModule(ctx context.Context, module, pkg string) (string, error) {
	dir, err := os.MkdirTemp("", "imagebuild-module-")
	if err != nil {
		return "", err
	}
	cache := moduleCacheDir(module, pkg)
	if cache != "" && copyFiles(cache, dir, "go.mod", "go.sum") == nil {
		return dir, nil
	}
	goMod := "module imagebuild.invalid/build\n\ngo 1.26.0\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	_, version, _ := strings.Cut(module, "@")
	// `go get pkg@version` adds the module's requirement and the checksums of every package pkg imports.
	if _, err := b.run(ctx, dir, nil, "get", pkg+"@"+version); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("prepare a module requiring %s: %w", module, err)
	}
	if cache != "" {
		// Best effort: a failure only costs the next build a `go get`.
		if os.MkdirAll(cache, 0o755) == nil && copyFiles(dir, cache, "go.sum", "go.mod") != nil {
			os.RemoveAll(cache)
		}
	}
	return dir, nil
}

// moduleCacheDir is where the resolved go.mod and go.sum of a temporary module for pkg of module are kept, or
// empty without a user cache directory.
func moduleCacheDir(module, pkg string) string {
	base, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(module + " " + pkg))
	return filepath.Join(base, "connected-registry", "imagebuild", "modules", hex.EncodeToString(sum[:8]))
}

// copyFiles copies the named files from src to dst, each through a temporary file and a rename; the last one
// named is written last, so its presence means the copy is complete.
func copyFiles(src, dst string, names ...string) error {
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			return err
		}
		f, err := os.CreateTemp(dst, "."+n+".tmp-")
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(dst, n))
		}
		if err != nil {
			os.Remove(f.Name())
			return err
		}
	}
	return nil
}

// compile cross-compiles the spec's package for each platform and returns the binaries in platform order.
func (b *Builder) compile(ctx context.Context, s GoImage) ([][]byte, error) {
	dir := s.Dir
	if s.Module != "" {
		tmp, err := b.tempModule(ctx, s.Module, s.Package)
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if dir == "" {
		dir = "."
	}
	out, err := os.MkdirTemp("", "imagebuild-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)

	ldflags := strings.Join(append([]string{"-s", "-w"}, s.LDFlags...), " ")
	bins := make([][]byte, 0, len(s.Platforms))
	for i, p := range s.Platforms {
		bin := filepath.Join(out, fmt.Sprintf("bin-%d", i))
		args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", bin}
		if b.Parallelism > 0 {
			args = append(args, fmt.Sprintf("-p=%d", b.Parallelism))
		}
		args = append(args, s.Package)
		start := time.Now()
		if _, err := b.run(ctx, dir, &p, args...); err != nil {
			return nil, fmt.Errorf("build %s for %s: %w", s.Package, p.String(), err)
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		b.logf("compiled %s for %s: %.1f MiB in %s", s.Package, p.String(), float64(len(data))/(1<<20),
			time.Since(start).Round(100*time.Millisecond))
		bins = append(bins, data)
	}
	return bins, nil
}
