package chartrender

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
)

// CertManagerVersion is the cert-manager chart version Chart.yaml pins.
const CertManagerVersion = "v1.21.2"

var (
	certManagerOnce sync.Once
	certManagerDir  string
	certManagerErr  error
)

// CertManagerModuleDir returns the directory of the github.com/cert-manager/cert-manager module at
// CertManagerVersion in the Go module cache, downloading it through the module proxy when needed. The module
// holds cert-manager's real chart source (deploy/charts/cert-manager) and CRDs (deploy/crds): the jetstack
// chart repository cannot be reached offline, the Go module proxy can.
func CertManagerModuleDir() (string, error) {
	certManagerOnce.Do(func() {
		cmd := exec.Command("go", "mod", "download", "-json", "github.com/cert-manager/cert-manager@"+CertManagerVersion)
		cmd.Dir = RepoRoot()
		out, err := cmd.Output()
		if err != nil {
			certManagerErr = fmt.Errorf("downloading the cert-manager module %s: %w", CertManagerVersion, err)
			return
		}
		var info struct{ Dir, Error string }
		if err := json.Unmarshal(out, &info); err != nil {
			certManagerErr = fmt.Errorf("reading go mod download output: %w", err)
			return
		}
		if info.Error != "" || info.Dir == "" {
			certManagerErr = fmt.Errorf("downloading the cert-manager module %s: %s", CertManagerVersion, info.Error)
			return
		}
		certManagerDir = info.Dir
	})
	return certManagerDir, certManagerErr
}

var chartVersionLine = regexp.MustCompile(`(?m)^(version|appVersion): .*$`)

// StageChart copies the chart into dst/connected-registry with cert-manager's chart, taken from its Go module
// and stamped with the pinned version, under charts/ — what `helm dependency build` does with network access.
// It returns the staged chart's directory. Nothing is written into the repository.
func StageChart(dst string) (string, error) {
	src := ChartDir()
	out := filepath.Join(dst, "connected-registry")
	if err := copyTree(src, out, func(rel string) bool { return rel == "charts" }); err != nil {
		return "", err
	}
	if err := VendorCertManager(out); err != nil {
		return "", err
	}
	return out, nil
}

// VendorCertManager writes cert-manager's chart, taken from its Go module and stamped with the pinned version, into
// chartDir/charts/cert-manager, replacing what is there: `helm dependency build` without the jetstack repository.
func VendorCertManager(chartDir string) error {
	mod, err := CertManagerModuleDir()
	if err != nil {
		return err
	}
	cm := filepath.Join(chartDir, "charts", "cert-manager")
	if err := os.RemoveAll(cm); err != nil {
		return err
	}
	if err := copyTree(filepath.Join(mod, "deploy", "charts", "cert-manager"), cm, nil); err != nil {
		return err
	}
	chartYAML := filepath.Join(cm, "Chart.yaml")
	data, err := os.ReadFile(chartYAML)
	if err != nil {
		return err
	}
	data = chartVersionLine.ReplaceAll(data, []byte("$1: "+CertManagerVersion))
	return os.WriteFile(chartYAML, data, 0o644)
}

func copyTree(src, dst string, skip func(rel string) bool) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}
