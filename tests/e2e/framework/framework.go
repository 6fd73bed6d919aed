// Package framework runs the end-to-end tests against the real single-node cluster of tests/cluster: it brings
// the cluster up once per run (or reuses a running one), imports the project's images into the node's
// containerd, starts a parent registry on the cluster bridge (the ACR-like test parent: token auth, blobs from a
// storage host), seeds it, and installs the chart three ways.
package framework

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/connected-registry/connected-registry/internal/testing/acrparent"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// Defaults of the test cluster (tests/cluster).
const (
	BridgeIP    = "10.244.0.1"
	CertsDir    = "/etc/containerd/certs.d"
	HelloImage  = "testdata/hello:v1"
	ParentUser  = "sync-token"
	imagesDir   = "_out/images"
	parentPort  = "5000"
	storagePort = "5001"
	// parentTokenLifetime is short enough that tokens expire, and are renewed, during a run.
	parentTokenLifetime = 2 * time.Minute
	stateSubdir         = "_out/e2e"
)

// ProductRepositories are where the project's two images are pushed on the parent (ci/images push keeps their
// repository paths); anyone may pull them there.
var ProductRepositories = []string{"connected-registry/connected-registry", "connected-registry/distribution"}

// Env is what every end-to-end test shares.
type Env struct {
	Root       string
	Kubeconfig string
	REST       *rest.Config
	Client     kubernetes.Interface
	CA         *testenv.CA
	// Parent stands in for ACR: token auth with the realm on its host, scoped tokens that expire, blobs sent from
	// a storage host of its own (internal/testing/acrparent).
	Parent *acrparent.Parent
	// ParentPassword is the password of the sync token ParentUser.
	ParentPassword string
	// Chart is the chart staged with cert-manager's chart under charts/, as the helm CLI needs it offline.
	Chart string
	// State holds files of this run (parent storage, values files).
	State string
	Log   io.Writer

	parentOptions acrparent.Options
	// blobGetsBefore counts the blob downloads of parents stopped before this one.
	blobGetsBefore int
}

// ParentBlobGets counts the blob downloads the parent's storage host has served so far, across its restarts.
func (e *Env) ParentBlobGets() int { return e.blobGetsBefore + e.Parent.BlobGets() }

// StopParent stops the parent registry: the site is disconnected.
func (e *Env) StopParent() {
	e.blobGetsBefore += e.Parent.BlobGets()
	e.Parent.Stop()
}

// StartParentAgain starts the parent registry again on its stored content, at the same addresses, with new
// signing keys: tokens the registry holds are refused and must be renewed.
func (e *Env) StartParentAgain(ctx context.Context) error {
	var err error
	e.Parent, err = acrparent.Start(ctx, e.parentOptions)
	return err
}

// Enabled reports whether end-to-end tests should run: they need root and several minutes.
func Enabled() bool { return os.Getenv("E2E") == "1" }

// Setup brings everything up. It is idempotent: a running cluster is reused.
func Setup(ctx context.Context, log io.Writer) (*Env, error) {
	e := &Env{Root: chartrender.RepoRoot(), Log: log, ParentPassword: "parent-password-e2e"}
	e.State = filepath.Join(e.Root, stateSubdir)
	if err := os.MkdirAll(e.State, 0o755); err != nil {
		return nil, err
	}
	step := func(what string, f func() error) error {
		start := time.Now()
		fmt.Fprintf(log, "e2e: %s...\n", what)
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(log, "e2e: %s done in %s\n", what, time.Since(start).Round(100*time.Millisecond))
		return nil
	}
	if err := step("cluster up", func() error { return e.Run(ctx, "bash", "ci/cluster.sh", "up") }); err != nil {
		return nil, err
	}
	if err := step("connect", e.connect); err != nil {
		return nil, err
	}
	if err := step("build and import images", func() error { return e.importImages(ctx) }); err != nil {
		return nil, err
	}
	if err := step("start and seed the parent registry", func() error { return e.startParent(ctx) }); err != nil {
		return nil, err
	}
	if err := step("stage chart", func() error {
		dir := filepath.Join(e.State, "chart")
		_ = os.RemoveAll(dir)
		var err error
		e.Chart, err = chartrender.StageChart(dir)
		return err
	}); err != nil {
		return nil, err
	}
	return e, nil
}

// Teardown stops the parent; the cluster stays up for the next run unless E2E_CLUSTER_DOWN=1.
func (e *Env) Teardown(ctx context.Context) {
	e.Parent.Stop()
	if os.Getenv("E2E_CLUSTER_DOWN") == "1" {
		_ = e.Run(ctx, "bash", "ci/cluster.sh", "down")
	}
}

// Run runs a command in the repository root, streaming its output to the log with a prefix.
func (e *Env) Run(ctx context.Context, name string, args ...string) error {
	_, err := e.run(ctx, true, name, args...)
	return err
}

// Output runs a command in the repository root and returns its standard output.
func (e *Env) Output(ctx context.Context, name string, args ...string) (string, error) {
	return e.run(ctx, false, name, args...)
}

// Combined runs a command in the repository root and returns its standard output and error together, as a
// user sees them.
func (e *Env) Combined(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = e.Root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *Env) run(ctx context.Context, stream bool, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = e.Root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stdout
	if stream {
		pw := prefixWriter(e.Log, "  | ")
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&stdout, pw), io.MultiWriter(&stderr, pw)
	}
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(stderr.String(), 40))
	}
	return stdout.String(), nil
}

func (e *Env) connect() error {
	out, err := e.Output(context.Background(), "bash", "ci/cluster.sh", "env")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "export KUBECONFIG="); ok {
			e.Kubeconfig = strings.Trim(v, `"'`)
		}
	}
	if e.Kubeconfig == "" {
		return fmt.Errorf("ci/cluster.sh env printed no KUBECONFIG:\n%s", out)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100
	e.REST = cfg
	e.Client, err = kubernetes.NewForConfig(cfg)
	return err
}

func (e *Env) importImages(ctx context.Context) error {
	// The parent is seeded with a multi-arch test image. Our own images are built for the node's architecture
	// only, to save CI minutes: their multi-platform build is proven by internal/testing/imagebuild's tests.
	if err := e.Run(ctx, "go", "run", "./ci/images", "build", "--out", imagesDir, "--only", "hello", "--platforms", "linux/amd64,linux/arm64"); err != nil {
		return err
	}
	if err := e.Run(ctx, "go", "run", "./ci/images", "build", "--out", imagesDir, "--only", "connected-registry,registry", "--platforms", "linux/"+runtime.GOARCH); err != nil {
		return err
	}
	tars, err := filepath.Glob(filepath.Join(e.Root, imagesDir, "*.tar"))
	if err != nil || len(tars) == 0 {
		return fmt.Errorf("no image tarballs in %s", imagesDir)
	}
	return e.Run(ctx, "bash", append([]string{"ci/cluster.sh", "import"}, tars...)...)
}

func (e *Env) startParent(ctx context.Context) error {
	ca, err := testenv.NewCA("connected-registry e2e CA")
	if err != nil {
		return err
	}
	e.CA = ca
	dir := filepath.Join(e.State, "parent")
	_ = os.RemoveAll(dir)
	e.parentOptions = acrparent.Options{
		Bin: filepath.Join(e.Root, "bin", "registry"), Dir: dir,
		Addr: net.JoinHostPort(BridgeIP, parentPort), StorageAddr: net.JoinHostPort(BridgeIP, storagePort),
		CA: ca, SyncToken: acrparent.Account{Name: ParentUser, Password: e.ParentPassword},
		TokenLifetime: parentTokenLifetime, Log: prefixWriter(e.Log, "  parent | "),
		// The extension bundle's test pulls the project's images from the parent by digest, as a cluster pulls
		// the Marketplace's images: the node needs no credentials for those two repositories, and only those.
		AnonymousPull: ProductRepositories,
	}
	if e.Parent, err = acrparent.Start(ctx, e.parentOptions); err != nil {
		return err
	}
	caFile := filepath.Join(e.State, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		return err
	}
	return e.Run(ctx, "go", "run", "./ci/images", "push", "--image-dir", imagesDir, "--only", "hello",
		"--rename", "connected-registry/testdata=testdata",
		"--registry", e.Parent.Host, "--ca", caFile, "--username", e.Parent.Admin.Name, "--password", e.Parent.Admin.Password)
}

type lineWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func prefixWriter(w io.Writer, prefix string) io.Writer { return &lineWriter{w: w, prefix: prefix} }

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(l.w, "%s%s\n", l.prefix, l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
