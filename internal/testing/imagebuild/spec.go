package imagebuild

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The non-root user of every image: the UID and GID distroless calls "nonroot".
const (
	NonRootUID  = 65532
	NonRootName = "nonroot"
	// NonRootUser is the image config's user for NonRootUID.
	NonRootUser = "65532:65532"
)

// OCI label (and annotation) keys the images carry.
const (
	LabelSource      = "org.opencontainers.image.source"
	LabelVersion     = "org.opencontainers.image.version"
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
)

// DefaultPath is the PATH of every image's environment.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Epoch is the creation time of every image and the modification time of every file, unless a spec says
// otherwise (SOURCE_DATE_EPOCH=0).
var Epoch = time.Unix(0, 0).UTC()

// DefaultPlatforms are the platforms an image is built for when its spec names none.
var DefaultPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// GoImage describes an image made of one Go program.
type GoImage struct {
	// Package is the main package to build: a path relative to Dir ("./cmd/connected-registry") or an import path.
	Package string
	// Dir is the directory `go build` runs in, inside the main module that holds Package. It must be empty when
	// Module is set.
	Dir string
	// Module, as "path@version", builds Package from that module version through a temporary main module that
	// requires it: what `go install Package@version` does, which refuses to cross-compile into GOBIN.
	Module string
	// LDFlags are added to "-s -w", for example "-X main.version=v1".
	LDFlags []string

	// Binary is the absolute path of the program in the image, such as "/connected-registry".
	Binary string
	// Platforms to build; empty means DefaultPlatforms. Only linux is supported.
	Platforms []v1.Platform

	// Entrypoint of the image; empty means [Binary].
	Entrypoint []string
	// Cmd is the image's default arguments.
	Cmd []string
	// User is the image's user, "uid[:gid]"; empty means NonRootUser. Set "0:0" only when root is needed.
	User string
	// Env is added to the image's environment after DefaultPath, as "KEY=value".
	Env []string
	// WorkingDir of the image; empty means "/".
	WorkingDir string
	// ExposedPorts such as "5000/tcp", for documentation.
	ExposedPorts []string
	// Labels of the image config; they are also set as annotations of the index.
	Labels map[string]string

	// Files are added to the layer besides the binary, /etc/passwd, /etc/group, /tmp and /home/nonroot. Parent
	// directories are created as root-owned 0755 unless listed.
	Files []File
	// CACertificates adds the Mozilla root certificates (from golang.org/x/crypto/x509roots/fallback, pinned in
	// go.mod) as /etc/ssl/certs/ca-certificates.crt, for programs that make TLS connections to the internet.
	CACertificates bool

	// Created is the image's creation time and the files' modification time; zero means Epoch.
	Created time.Time
}

// File is one file or directory of an image's layer.
type File struct {
	// Path is absolute, such as "/etc/distribution/config.yml".
	Path string
	// Mode holds the permission bits, and fs.ModeDir for a directory.
	Mode fs.FileMode
	// UID and GID own the file.
	UID, GID int
	// Data is the content of a regular file.
	Data []byte
}

// Dir returns a directory entry.
func Dir(p string, perm fs.FileMode, uid, gid int) File {
	return File{Path: p, Mode: fs.ModeDir | perm, UID: uid, GID: gid}
}

// RegularFile returns a root-owned regular file.
func RegularFile(p string, perm fs.FileMode, data []byte) File {
	return File{Path: p, Mode: perm, Data: data}
}

// ErrInvalidSpec is wrapped by every error about a GoImage that cannot be built as given.
var ErrInvalidSpec = errors.New("invalid image spec")

// specCheck is one named validation of a spec; it returns nil when the spec passes it.
type specCheck struct {
	name  string
	check func(*GoImage) error
}

var specChecks = []specCheck{
	{"package", func(s *GoImage) error {
		if s.Package == "" {
			return errors.New("Package is empty: name the main package to build, such as ./cmd/connected-registry")
		}
		return nil
	}},
	{"module or dir", func(s *GoImage) error {
		if s.Module == "" {
			return nil
		}
		if s.Dir != "" {
			return fmt.Errorf("both Module %q and Dir %q are set: a module version is built in a temporary module", s.Module, s.Dir)
		}
		if p, v, ok := strings.Cut(s.Module, "@"); !ok || p == "" || v == "" {
			return fmt.Errorf("Module %q is not a module version such as github.com/distribution/distribution/v3@v3.1.2", s.Module)
		}
		if strings.HasPrefix(s.Package, ".") {
			return fmt.Errorf("Package %q is relative, but Module %q is set: give the full import path", s.Package, s.Module)
		}
		return nil
	}},
	{"binary path", func(s *GoImage) error { return checkImagePath("Binary", s.Binary) }},
	{"platforms", func(s *GoImage) error {
		seen := map[string]bool{}
		for _, p := range s.Platforms {
			if p.OS != "linux" {
				return fmt.Errorf("platform %s is not supported: only linux images are built", p.String())
			}
			if p.Architecture == "" {
				return fmt.Errorf("platform %q has no architecture", p.String())
			}
			if seen[p.String()] {
				return fmt.Errorf("platform %s is listed twice", p.String())
			}
			seen[p.String()] = true
		}
		return nil
	}},
	{"user", func(s *GoImage) error {
		if _, _, err := parseUser(s.User); err != nil {
			return err
		}
		return nil
	}},
	{"files", func(s *GoImage) error {
		seen := map[string]bool{path.Clean(s.Binary): true}
		for _, f := range s.Files {
			if err := checkImagePath("File", f.Path); err != nil {
				return err
			}
			if f.Mode&^(fs.ModeDir|fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid) != 0 {
				return fmt.Errorf("file %s has mode %s: only regular files and directories are supported", f.Path, f.Mode)
			}
			if f.Mode.IsDir() && len(f.Data) > 0 {
				return fmt.Errorf("directory %s has data", f.Path)
			}
			if seen[path.Clean(f.Path)] {
				return fmt.Errorf("file %s is listed twice (or is the binary)", f.Path)
			}
			seen[path.Clean(f.Path)] = true
		}
		return nil
	}},
	{"env", func(s *GoImage) error {
		for _, e := range s.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				return fmt.Errorf("environment entry %q is not KEY=value", e)
			}
		}
		return nil
	}},
}

// validate runs the checks in order and returns the first failure.
func (s *GoImage) validate() error {
	for _, c := range specChecks {
		if err := c.check(s); err != nil {
			return fmt.Errorf("%w (%s): %w", ErrInvalidSpec, c.name, err)
		}
	}
	return nil
}

func checkImagePath(what, p string) error {
	switch {
	case !path.IsAbs(p):
		return fmt.Errorf("%s path %q is not absolute", what, p)
	case path.Clean(p) != p:
		return fmt.Errorf("%s path %q is not clean (want %q)", what, p, path.Clean(p))
	case p == "/":
		return fmt.Errorf("%s path is the root directory", what)
	}
	return nil
}

// withDefaults returns a copy of s with its empty fields set to their defaults.
func (s GoImage) withDefaults() GoImage {
	if len(s.Platforms) == 0 {
		s.Platforms = DefaultPlatforms
	}
	if len(s.Entrypoint) == 0 {
		s.Entrypoint = []string{s.Binary}
	}
	if s.User == "" {
		s.User = NonRootUser
	}
	if s.WorkingDir == "" {
		s.WorkingDir = "/"
	}
	if s.Created.IsZero() {
		s.Created = Epoch
	}
	s.Created = s.Created.UTC()
	return s
}

// parseUser parses "uid[:gid]" with numeric ids; empty is NonRootUser.
func parseUser(u string) (uid, gid int, err error) {
	if u == "" {
		return NonRootUID, NonRootUID, nil
	}
	us, gs, hasGID := strings.Cut(u, ":")
	if _, err := fmt.Sscanf(us, "%d", &uid); err != nil || fmt.Sprint(uid) != us || uid < 0 {
		return 0, 0, fmt.Errorf("user %q is not numeric uid[:gid]: Kubernetes can verify runAsNonRoot for numeric users only", u)
	}
	gid = uid
	if hasGID {
		if _, err := fmt.Sscanf(gs, "%d", &gid); err != nil || fmt.Sprint(gid) != gs || gid < 0 {
			return 0, 0, fmt.Errorf("user %q is not numeric uid[:gid]", u)
		}
	}
	return uid, gid, nil
}
