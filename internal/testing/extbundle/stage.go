package extbundle

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// Files of a bundle directory, beside the chart.
const (
	ManifestFile     = "manifest.yaml"
	MainTemplateFile = "mainTemplate.json"
	UIDefinitionFile = "createUIDefinition.json"
	ChartDirName     = "connected-registry"
	// SourceDir holds the three files in the repository.
	SourceDir = "extension"
)

//go:embed cert-manager-azure-images.tpl
var certManagerAzureImagesTpl []byte

// certManagerImageCall is a cert-manager template's image reference: its first argument, the image values of one
// component, is what the bundle replaces.
var certManagerImageCall = regexp.MustCompile(`template "cert-manager\.image" \(tuple \.Values\.((?:[a-z]+\.)?image) `)

// certManagerKeys maps the image values of cert-manager's components to their global.azure.images entries.
var certManagerKeys = map[string]string{
	"image":                 "certManagerController",
	"webhook.image":         "certManagerWebhook",
	"cainjector.image":      "certManagerCainjector",
	"acmesolver.image":      "certManagerAcmesolver",
	"startupapicheck.image": "certManagerStartupapicheck",
}

// StageOptions says what goes into a bundle.
type StageOptions struct {
	// Out is the bundle directory; the chart and the three files in it are replaced.
	Out string
	// Images are the images by digest, as ReadImageLists returns them.
	Images map[string]string
	// RegistryServer, when set, replaces the manifest's registryServer (the publisher's ACR).
	RegistryServer string
}

// Staged is what Stage wrote.
type Staged struct {
	Dir, Chart string
	// Images are the global.azure.images entries written into the chart's values.yaml.
	Images map[string]AzureImage
	// Missing are the entries no image was given for.
	Missing []string
}

// Stage writes the bundle: the chart with cert-manager's chart unpacked under charts/ (taken from its Go module,
// as chartrender.StageChart does), its image references read from global.azure.images, the chart's
// global.azure.images filled from the images, and the manifest, the ARM template and the UI definition beside it.
func Stage(o StageOptions) (*Staged, error) {
	// Only what Stage writes is replaced: the image archives may live beside it (make extension-bundle builds them
	// into _out/extension/images).
	for _, f := range []string{ChartDirName, ManifestFile, MainTemplateFile, UIDefinitionFile} {
		if err := os.RemoveAll(filepath.Join(o.Out, f)); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	chartDir, err := chartrender.StageChart(o.Out)
	if err != nil {
		return nil, err
	}
	if err := patchCertManager(filepath.Join(chartDir, "charts", "cert-manager")); err != nil {
		return nil, err
	}
	images, missing, err := AzureImages(o.Images)
	if err != nil {
		return nil, err
	}
	if err := writeAzureImages(filepath.Join(chartDir, "values.yaml"), images); err != nil {
		return nil, err
	}
	src := filepath.Join(chartrender.RepoRoot(), SourceDir)
	for _, f := range []string{ManifestFile, MainTemplateFile, UIDefinitionFile} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return nil, err
		}
		if f == ManifestFile && o.RegistryServer != "" {
			re := regexp.MustCompile(`(?m)^registryServer: .*$`)
			if !re.Match(data) {
				return nil, fmt.Errorf("%s has no registryServer line", f)
			}
			data = re.ReplaceAll(data, []byte(fmt.Sprintf("registryServer: %q", o.RegistryServer)))
		}
		if err := os.WriteFile(filepath.Join(o.Out, f), data, 0o644); err != nil {
			return nil, err
		}
	}
	return &Staged{Dir: o.Out, Chart: chartDir, Images: images, Missing: missing}, nil
}

// patchCertManager makes every image reference of the cert-manager chart read global.azure.images when set: the
// packaging tool relocates only those.
func patchCertManager(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "templates", "_connected-registry-azure-images.tpl"), certManagerAzureImagesTpl, 0o644); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "templates", "*.yaml"))
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var bad error
		out := certManagerImageCall.ReplaceAllFunc(data, func(m []byte) []byte {
			values := string(certManagerImageCall.FindSubmatch(m)[1])
			key, ok := certManagerKeys[values]
			if !ok {
				bad = fmt.Errorf("%s: cert-manager image %s has no global.azure.images entry", filepath.Base(f), values)
				return m
			}
			seen[key] = true
			return []byte(fmt.Sprintf(`template "cert-manager.image" (tuple (include "cert-manager.azureImage" (list $ %q .Values.%s) | fromJson) `, key, values))
		})
		if bad != nil {
			return bad
		}
		if err := os.WriteFile(f, out, 0o644); err != nil {
			return err
		}
	}
	var lacking []string
	for values, key := range certManagerKeys {
		if !seen[key] {
			lacking = append(lacking, values)
		}
	}
	if len(lacking) > 0 {
		sort.Strings(lacking)
		return fmt.Errorf("the cert-manager chart no longer references %s as the bundle expects: update extbundle's patch", strings.Join(lacking, ", "))
	}
	return nil
}

// writeAzureImages replaces the chart's empty `images: {}` under global.azure with the entries.
func writeAzureImages(valuesFile string, images map[string]AzureImage) error {
	data, err := os.ReadFile(valuesFile)
	if err != nil {
		return err
	}
	const empty = "\n    images: {}\n"
	if strings.Count(string(data), empty) != 1 {
		return fmt.Errorf("%s: expected one empty global.azure.images (%q)", valuesFile, strings.TrimSpace(empty))
	}
	if len(images) == 0 {
		return nil
	}
	block, err := yaml.Marshal(map[string]any{"images": images})
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("\n")
	for _, line := range strings.Split(strings.TrimRight(string(block), "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return os.WriteFile(valuesFile, []byte(strings.Replace(string(data), empty, b.String(), 1)), 0o644)
}
