package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/connected-registry/connected-registry/internal/testing/imagebuild"
)

// Defaults of the flags.
const (
	// DefaultDir is relative to the repository root.
	DefaultDir       = "_out/images"
	DefaultPlatforms = "linux/amd64,linux/arm64"
)

const usage = `usage: images <command> [flags]

Commands:
  build   build the images as OCI layout tarballs DIR/<name>.tar and list them in DIR/images.txt
  push    push the tarballs of a directory to a registry, over HTTPS only unless --insecure-http

Run "images <command> -h" for its flags. Every flag has an IMAGES_* environment twin.
`

// run dispatches to a command.
func run(ctx context.Context, args []string, getenv func(string) string, out, errOut io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(errOut, usage)
		return errors.New("give a command: build or push")
	}
	switch args[0] {
	case "build":
		var o BuildOptions
		fs := newFlagSet("build", errOut)
		if err := o.BindFlags(fs, getenv); err != nil {
			return err
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("build takes no arguments, got %q", fs.Args())
		}
		if err := o.Complete(); err != nil {
			return err
		}
		return o.Run(ctx, out)
	case "push":
		var o PushOptions
		fs := newFlagSet("push", errOut)
		if err := o.BindFlags(fs, getenv); err != nil {
			return err
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("push takes no arguments, got %q", fs.Args())
		}
		if err := o.Complete(); err != nil {
			return err
		}
		return o.Run(ctx, out)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(out, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(errOut, usage)
		return fmt.Errorf("unknown command %q: give build or push", args[0])
	}
}

func newFlagSet(name string, errOut io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("images "+name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	return fs
}

// envOr returns the environment twin's value, or def.
func envOr(getenv func(string) string, env, def string) string {
	if v := getenv(env); v != "" {
		return v
	}
	return def
}

func envBool(getenv func(string) string, env string) (bool, error) {
	v := getenv(env)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("parse %s=%q: %w", env, v, err)
	}
	return b, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// resolveDir makes a relative directory relative to the repository root, so `go run ./ci/images` behaves the
// same from any directory of the repository.
func resolveDir(root, dir string) string {
	if filepath.IsAbs(dir) {
		return dir
	}
	return filepath.Join(root, dir)
}

// BuildOptions configure `images build`.
type BuildOptions struct {
	// Out is the directory the archives and images.txt are written to.
	Out string
	// Platforms, comma-separated os/arch[/variant].
	Platforms string
	// Only lists image names to build, comma-separated; empty builds all.
	Only string
	// Version tags the connected-registry image; empty uses the chart's appVersion.
	Version string
	// Root is the repository root; empty finds it from the working directory.
	Root string
	// Parallelism is go build -p; 0 is Go's default.
	Parallelism int

	root            string
	platforms       []v1.Platform
	images          []imagebuild.Image
	sourceDateEpoch string
	created         time.Time
}

// BindFlags registers the flags on fs, each defaulting to its environment twin, then to the built-in default.
func (o *BuildOptions) BindFlags(fs *flag.FlagSet, getenv func(string) string) error {
	p := 0
	if v := getenv("IMAGES_GO_PARALLELISM"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("parse IMAGES_GO_PARALLELISM=%q: %w", v, err)
		}
		p = n
	}
	// The reproducible-builds convention: the time of every image and file, in seconds since the epoch.
	o.sourceDateEpoch = getenv("SOURCE_DATE_EPOCH")
	fs.StringVar(&o.Out, "out", envOr(getenv, "IMAGES_OUT", DefaultDir),
		"directory for <name>.tar and images.txt, relative to the repository root (env IMAGES_OUT)")
	fs.StringVar(&o.Platforms, "platforms", envOr(getenv, "IMAGES_PLATFORMS", DefaultPlatforms),
		"comma-separated platforms of every image (env IMAGES_PLATFORMS)")
	fs.StringVar(&o.Only, "only", getenv("IMAGES_ONLY"),
		"comma-separated image names to build (connected-registry, registry, hello); empty builds all (env IMAGES_ONLY)")
	fs.StringVar(&o.Version, "version", getenv("IMAGES_VERSION"),
		"tag of the connected-registry image; empty uses appVersion of "+imagebuild.ChartPath+" (env IMAGES_VERSION)")
	fs.StringVar(&o.Root, "root", getenv("IMAGES_ROOT"),
		"repository root; empty finds the go.mod of "+imagebuild.ModulePath+" from the working directory (env IMAGES_ROOT)")
	fs.IntVar(&o.Parallelism, "go-parallelism", p,
		"go build -p: packages compiled at once; 0 is the number of CPUs (env IMAGES_GO_PARALLELISM)")
	return nil
}

// Complete validates the options and resolves the repository, the platforms and the images.
func (o *BuildOptions) Complete() error {
	var err error
	if o.root, err = repoRoot(o.Root); err != nil {
		return err
	}
	if o.Out == "" {
		return errors.New("flag -out must not be empty")
	}
	o.Out = resolveDir(o.root, o.Out)
	if o.platforms, err = parsePlatforms(o.Platforms); err != nil {
		return err
	}
	if o.Parallelism < 0 {
		return fmt.Errorf("flag -go-parallelism=%d must not be negative", o.Parallelism)
	}
	all, err := imagebuild.ProjectImages(o.root, o.Version, o.platforms)
	if err != nil {
		return err
	}
	if o.images, err = selectImages(all, splitList(o.Only)); err != nil {
		return err
	}
	o.created = imagebuild.Epoch
	if v := o.sourceDateEpoch; v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("parse SOURCE_DATE_EPOCH=%q: %w", v, err)
		}
		o.created = time.Unix(sec, 0).UTC()
	}
	return nil
}

func repoRoot(root string) (string, error) {
	if root != "" {
		return filepath.Abs(root)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return imagebuild.FindRepoRoot(wd)
}

func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, f := range splitList(s) {
		p, err := v1.ParsePlatform(f)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", f, err)
		}
		out = append(out, *p)
	}
	if len(out) == 0 {
		return nil, errors.New("flag -platforms is empty: give at least one, such as linux/amd64")
	}
	return out, nil
}

func selectImages(all []imagebuild.Image, only []string) ([]imagebuild.Image, error) {
	if len(only) == 0 {
		return all, nil
	}
	var names []string
	for _, img := range all {
		names = append(names, img.Name)
	}
	var out []imagebuild.Image
	for _, n := range only {
		i := slices.Index(names, n)
		if i < 0 {
			return nil, fmt.Errorf("unknown image %q in -only: the images are %s", n, strings.Join(names, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// Run builds the selected images, writes DIR/<name>.tar for each and rewrites DIR/images.txt from every
// archive in DIR.
func (o *BuildOptions) Run(ctx context.Context, out io.Writer) error {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	b := &imagebuild.Builder{Parallelism: o.Parallelism, Log: out}
	start := time.Now()
	for _, img := range o.images {
		t := time.Now()
		spec := img.Spec
		spec.Created = o.created
		idx, err := b.Build(ctx, spec)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.Name, err)
		}
		path := filepath.Join(o.Out, img.Name+".tar")
		if err := imagebuild.WriteArchiveFile(path, imagebuild.NamedIndex{Refs: img.Refs, Index: idx}); err != nil {
			return err
		}
		d, err := idx.Digest()
		if err != nil {
			return err
		}
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "built %s (%s) %s: %s, %.1f MiB, in %s\n", img.Name, strings.Join(img.Refs, ", "), d,
			path, float64(info.Size())/(1<<20), time.Since(t).Round(100*time.Millisecond))
	}
	if _, err := imagebuild.WriteImageList(o.Out); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s in %s\n", filepath.Join(o.Out, imagebuild.ImageListName), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// renameFlags collects repeated --rename flags.
type renameFlags []imagebuild.Rename

func (r *renameFlags) String() string {
	var s []string
	for _, x := range *r {
		s = append(s, x.From+"="+x.To)
	}
	return strings.Join(s, ",")
}

func (r *renameFlags) Set(v string) error {
	x, err := imagebuild.ParseRename(v)
	if err != nil {
		return err
	}
	*r = append(*r, x)
	return nil
}

// PushOptions configure `images push`.
type PushOptions struct {
	// ImageDir holds the archives to push.
	ImageDir string
	// Registry is the destination "host[:port]".
	Registry string
	// CA is a PEM file trusted in addition to the system roots.
	CA string
	// Username and Password authenticate with HTTP Basic; both or neither.
	Username, Password string
	// Renames map repository paths.
	Renames renameFlags
	// InsecureHTTP speaks plain HTTP only.
	InsecureHTTP bool
	// Only lists archive names (without .tar) to push; empty pushes all.
	Only string
	// Root is the repository root, for a relative ImageDir.
	Root string
	// RefsUnder, when set, pushes only the references under this repository prefix (such as
	// ghcr.io/connected-registry), leaving out the other names an archive carries (docker.io/library/registry:3).
	RefsUnder string

	client   *imagebuild.RegistryClient
	archives []string
}

// BindFlags registers the flags on fs, each defaulting to its environment twin, then to the built-in default.
func (o *PushOptions) BindFlags(fs *flag.FlagSet, getenv func(string) string) error {
	insecure, err := envBool(getenv, "IMAGES_INSECURE_HTTP")
	if err != nil {
		return err
	}
	for _, r := range splitList(getenv("IMAGES_RENAME")) {
		if err := o.Renames.Set(r); err != nil {
			return fmt.Errorf("IMAGES_RENAME: %w", err)
		}
	}
	fs.StringVar(&o.ImageDir, "image-dir", envOr(getenv, "IMAGES_IMAGE_DIR", DefaultDir),
		"directory of the *.tar archives built by 'images build', relative to the repository root (env IMAGES_IMAGE_DIR)")
	fs.StringVar(&o.Registry, "registry", getenv("IMAGES_REGISTRY"),
		"destination registry HOST[:PORT]; each image keeps its repository path and tag under it (env IMAGES_REGISTRY)")
	fs.StringVar(&o.CA, "ca", getenv("IMAGES_CA"),
		"PEM file of a CA trusted in addition to the system roots, for the registry's certificate (env IMAGES_CA)")
	fs.StringVar(&o.Username, "username", getenv("IMAGES_USERNAME"), "registry user name, for HTTP Basic (env IMAGES_USERNAME)")
	fs.StringVar(&o.Password, "password", getenv("IMAGES_PASSWORD"),
		"registry password; prefer the environment twin, flags show in ps (env IMAGES_PASSWORD)")
	fs.Var(&o.Renames, "rename",
		"`FROM=TO`: push repository path FROM (no host, matched at / boundaries) as TO; repeatable (env IMAGES_RENAME, comma-separated)")
	fs.BoolVar(&o.InsecureHTTP, "insecure-http", insecure,
		"speak plain HTTP to the registry, without TLS; by default only HTTPS is spoken, never a fallback (env IMAGES_INSECURE_HTTP)")
	fs.StringVar(&o.Only, "only", getenv("IMAGES_ONLY"),
		"comma-separated archive names to push (connected-registry, registry, hello); empty pushes all (env IMAGES_ONLY)")
	fs.StringVar(&o.Root, "root", getenv("IMAGES_ROOT"),
		"repository root for a relative -image-dir; empty finds it from the working directory (env IMAGES_ROOT)")
	fs.StringVar(&o.RefsUnder, "refs-under", getenv("IMAGES_REFS_UNDER"),
		"push only the references under this repository prefix, such as ghcr.io/connected-registry; empty pushes every reference of an archive (env IMAGES_REFS_UNDER)")
	return nil
}

// keepRef reports whether ref is under the -refs-under prefix, at a path boundary.
func (o *PushOptions) keepRef(ref string) bool {
	prefix := strings.TrimSuffix(o.RefsUnder, "/")
	if prefix == "" {
		return true
	}
	return strings.HasPrefix(ref, prefix+"/")
}

// Complete validates the options, reads the CA and lists the archives.
func (o *PushOptions) Complete() error {
	if o.Registry == "" {
		return errors.New("flag -registry is required: give the destination HOST[:PORT]")
	}
	if strings.Contains(o.Registry, "://") || strings.Contains(o.Registry, "/") {
		return fmt.Errorf("flag -registry=%q must be HOST[:PORT], without a scheme or path", o.Registry)
	}
	if (o.Username == "") != (o.Password == "") {
		return errors.New("give both -username and -password, or neither")
	}
	if o.InsecureHTTP && o.CA != "" {
		return errors.New("-ca and -insecure-http contradict each other: a CA is for HTTPS")
	}
	dir := o.ImageDir
	if !filepath.IsAbs(dir) {
		root, err := repoRoot(o.Root)
		if err != nil {
			return err
		}
		dir = resolveDir(root, dir)
	}
	o.client = &imagebuild.RegistryClient{InsecureHTTP: o.InsecureHTTP}
	if o.CA != "" {
		pool, err := imagebuild.CertPoolFromFile(o.CA)
		if err != nil {
			return err
		}
		o.client.RootCAs = pool
	}
	if o.Username != "" {
		o.client.Auth = &authn.Basic{Username: o.Username, Password: o.Password}
	}
	tars, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return err
	}
	if only := splitList(o.Only); len(only) > 0 {
		var picked []string
		for _, n := range only {
			p := filepath.Join(dir, n+".tar")
			if !slices.Contains(tars, p) {
				return fmt.Errorf("no archive %s for -only %q: run `images build` first", p, n)
			}
			picked = append(picked, p)
		}
		tars = picked
	}
	if len(tars) == 0 {
		return fmt.Errorf("no *.tar in %s: run `images build` first", dir)
	}
	o.archives = tars
	return nil
}

// Run pushes every reference of every archive and prints what went where.
func (o *PushOptions) Run(ctx context.Context, out io.Writer) error {
	for _, tar := range o.archives {
		start := time.Now()
		err := o.client.PushArchiveRefs(ctx, tar, o.Registry, o.Renames, o.keepRef, func(p imagebuild.Pushed) {
			fmt.Fprintf(out, "pushed %s as %s@%s in %s\n", p.Source, p.Destination, p.Digest,
				time.Since(start).Round(100*time.Millisecond))
		})
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(tar), err)
		}
	}
	return nil
}
