package imagebuild

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"sigs.k8s.io/yaml"
)

// The project's images.
const (
	// ModulePath is the root module of this repository.
	ModulePath = "github.com/connected-registry/connected-registry"
	// SourceURL is the project's source repository, the org.opencontainers.image.source of its images.
	SourceURL = "https://github.com/connected-registry/connected-registry"
	// ChartPath is the chart's Chart.yaml, relative to the repository root; its appVersion tags the product image.
	ChartPath = "chart/connected-registry/Chart.yaml"

	// Repository is the product image's repository, the chart's default image: the in-cluster binary
	// connected-registry (cmd/connected-registry) as its entrypoint.
	Repository = "ghcr.io/connected-registry/connected-registry"
	// Binary is the in-cluster binary's path in the product image.
	Binary = "/connected-registry"

	// DistributionModule is the module version the registry image is built from.
	DistributionModule  = "github.com/distribution/distribution/v3@" + DistributionVersion
	DistributionVersion = "v3.1.2"
	// DistributionRef is the official image's name, also given to the image the tests build, so values that
	// name the official image run the same build.
	DistributionRef = "docker.io/library/registry:3"
	// DistributionProjectRef is the registry image's own name, for release registries.
	DistributionProjectRef = "ghcr.io/connected-registry/distribution:" + DistributionVersion
	// DistributionConfigPath is where the image's default configuration lives, and what the chart mounts.
	DistributionConfigPath = "/etc/distribution/config.yml"

	// HelloRef is the end-to-end tests' workload image: it prints "hello from <GOARCH>" and exits 0.
	HelloRef = "ghcr.io/connected-registry/testdata/hello:v1"
)

// DistributionDefaultConfig is the default configuration of the official registry:3 image (filesystem storage
// in /var/lib/registry, plain HTTP on :5000), so the image works on its own; the chart replaces it.
const DistributionDefaultConfig = `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`

// Image is one image of the project: its short name (the archive's file name and the --only key), the
// references it is tagged with and how it is built.
type Image struct {
	Name string
	Refs []string
	Spec GoImage
}

// ProjectImages returns the project's images, built from the repository at root, with the product image tagged
// version (the chart's appVersion when empty), for platforms (DefaultPlatforms when empty).
func ProjectImages(root, version string, platforms []v1.Platform) ([]Image, error) {
	if version == "" {
		v, err := ChartAppVersion(root)
		if err != nil {
			return nil, err
		}
		version = v
	}
	nonRootDir := func(p string) File { return Dir(p, 0o755, NonRootUID, NonRootUID) }
	return []Image{
		{
			Name: "connected-registry",
			Refs: []string{Repository + ":" + version},
			Spec: GoImage{
				Package:   "./cmd/connected-registry",
				Dir:       root,
				Binary:    Binary,
				Platforms: platforms,
				// The parent gate speaks TLS to the parent: a public registry needs the public roots.
				CACertificates: true,
				Labels: map[string]string{
					LabelSource:      SourceURL,
					LabelVersion:     version,
					LabelTitle:       "connected-registry",
					LabelDescription: "The in-cluster binary of the connected-registry chart: pre-install checks, certificate generation, the registry pod's tls-reloader, parent gate and credential helper, the trust agent and the post-delete cleanup.",
				},
			},
		},
		{
			Name: "registry",
			Refs: []string{DistributionProjectRef, DistributionRef},
			Spec: GoImage{
				Package:   "github.com/distribution/distribution/v3/cmd/registry",
				Module:    DistributionModule,
				LDFlags:   []string{"-X github.com/distribution/distribution/v3/version.version=" + DistributionVersion},
				Binary:    "/bin/registry",
				Platforms: platforms,
				Cmd:       []string{"serve", DistributionConfigPath},
				// Distribution v3 exports traces to localhost:4318 unless told not to.
				Env:          []string{"OTEL_TRACES_EXPORTER=none"},
				ExposedPorts: []string{"5000/tcp"},
				Files: []File{
					Dir("/etc/distribution", 0o755, 0, 0),
					RegularFile(DistributionConfigPath, 0o644, []byte(DistributionDefaultConfig)),
					nonRootDir("/var/lib/registry"),
				},
				// A pull-through cache reaches its parent over TLS; the chart adds a private CA through
				// SSL_CERT_FILE and keeps SSL_CERT_DIR=/etc/ssl/certs for these.
				CACertificates: true,
				Labels: map[string]string{
					LabelSource:      "https://github.com/distribution/distribution",
					LabelVersion:     DistributionVersion,
					LabelTitle:       "Distribution registry",
					LabelDescription: "The CNCF Distribution registry " + DistributionVersion + " on an empty base, built by connected-registry.",
				},
			},
		},
		{
			Name: "hello",
			Refs: []string{HelloRef},
			Spec: GoImage{
				Package:   "./ci/images/hello",
				Dir:       root,
				Binary:    "/hello",
				Platforms: platforms,
				Labels: map[string]string{
					LabelSource:      SourceURL,
					LabelVersion:     "v1",
					LabelTitle:       "connected-registry test workload",
					LabelDescription: `Prints "hello from <GOARCH>" and exits 0.`,
				},
			},
		},
	}, nil
}

// ChartAppVersion returns the appVersion of the chart under root.
func ChartAppVersion(root string) (string, error) {
	p := filepath.Join(root, filepath.FromSlash(ChartPath))
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read the chart's appVersion: %w", err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		return "", fmt.Errorf("parse %s: %w", p, err)
	}
	if chart.AppVersion == "" {
		return "", fmt.Errorf("%s has no appVersion", p)
	}
	return chart.AppVersion, nil
}

// ErrNoRepoRoot is returned by FindRepoRoot outside the repository.
var ErrNoRepoRoot = errors.New("not inside the connected-registry repository: no go.mod declaring " + ModulePath + " here or above")

// FindRepoRoot returns the directory at or above dir whose go.mod declares ModulePath.
func FindRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modulePath(data) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoRepoRoot
		}
		dir = parent
	}
}

func modulePath(goMod []byte) string {
	for _, line := range strings.Split(string(goMod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
