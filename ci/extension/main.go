// Command extension stages the chart as an Azure Arc / AKS cluster extension bundle, the input of the Azure
// Marketplace's packaging tool (container-package-app), and checks offline what that tool checks.
//
//	go run ./ci/extension stage --images FILE[,FILE] [--out _out/extension] [--registry-server NAME.azurecr.io]
//	go run ./ci/extension check [--dir _out/extension] [--helm bin/helm3,bin/helm4]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/connected-registry/connected-registry/internal/testing/extbundle"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "extension:", err)
		os.Exit(1)
	}
}

const usage = `usage: extension <command> [flags]

Commands:
  stage   write the bundle: the chart with cert-manager's chart unpacked, global.azure.images from image lists,
          manifest.yaml, mainTemplate.json and createUIDefinition.json
  check   check a staged bundle offline as the packaging tool would

Every flag has an EXTENSION_* environment twin.
`

// ErrNotReady is returned when a staged bundle fails a check.
var ErrNotReady = errors.New("the bundle is not ready for the packaging tool")

func run(_ context.Context, args []string, getenv func(string) string, out, errOut io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(errOut, usage)
		return errors.New("give a command: stage or check")
	}
	fs := flag.NewFlagSet("extension "+args[0], flag.ContinueOnError)
	fs.SetOutput(errOut)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	switch args[0] {
	case "stage":
		images := fs.String("images", env("EXTENSION_IMAGES", ""), "comma- or space-separated image lists of \"REF DIGEST [ARCHIVE]\" lines, as ci/images build writes images.txt (EXTENSION_IMAGES)")
		outDir := fs.String("out", env("EXTENSION_OUT", "_out/extension"), "the bundle directory: its chart and three files are replaced (EXTENSION_OUT)")
		server := fs.String("registry-server", env("EXTENSION_REGISTRY_SERVER", ""), "the publisher's ACR login server for manifest.yaml's registryServer; empty keeps the file's (EXTENSION_REGISTRY_SERVER)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		files := strings.FieldsFunc(*images, func(r rune) bool { return r == ',' || r == ' ' })
		if len(files) == 0 {
			return errors.New("give --images: the image lists with the images by digest")
		}
		digests, err := extbundle.ReadImageLists(files...)
		if err != nil {
			return err
		}
		st, err := extbundle.Stage(extbundle.StageOptions{Out: *outDir, Images: digests, RegistryServer: *server})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "staged %s (chart %s)\n", st.Dir, st.Chart)
		for _, k := range extbundle.ImageKeys {
			if img, ok := st.Images[k.Name]; ok {
				fmt.Fprintf(out, "  global.azure.images.%s: %s\n", k.Name, img.Ref())
			} else {
				fmt.Fprintf(out, "  global.azure.images.%s: none given: installs that need it (%s) fail at render\n", k.Name, k.Needed)
			}
		}
		return nil
	case "check":
		dir := fs.String("dir", env("EXTENSION_OUT", "_out/extension"), "the staged bundle (EXTENSION_OUT)")
		helm := fs.String("helm", env("EXTENSION_HELM", ""), "comma-separated helm CLIs that lint the chart with --strict (EXTENSION_HELM)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		var bins []string
		for _, b := range strings.Split(*helm, ",") {
			if b = strings.TrimSpace(b); b != "" {
				bins = append(bins, b)
			}
		}
		probs := extbundle.Check(*dir, extbundle.CheckOptions{HelmBins: bins})
		for _, p := range probs {
			fmt.Fprintf(errOut, "FAIL %s\n", p)
		}
		if len(probs) > 0 {
			if missing := missingImages(*dir); len(missing) > 0 {
				fmt.Fprintf(errOut, "hint: the bundle has no image for global.azure.images.%s; give them by digest in one more list of \"REF DIGEST\" lines (EXTENSION_IMAGES=\"_out/extension/images/images.txt FILE\")\n", strings.Join(missing, ", global.azure.images."))
			}
			return fmt.Errorf("%w: %d problem(s)", ErrNotReady, len(probs))
		}
		fmt.Fprintf(out, "%s: every offline check passed (manifest, unpacked chart, helm lint --strict with %d CLI(s), ARM template, UI definition, settings in the schema, every examples/ scenario through the template with every image by digest)\n", *dir, len(bins))
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(out, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(errOut, usage)
		return fmt.Errorf("unknown command %q: give stage or check", args[0])
	}
}

// missingImages lists the global.azure.images entries a staged bundle lacks.
func missingImages(dir string) []string {
	images, err := extbundle.ChartAzureImages(filepath.Join(dir, extbundle.ChartDirName))
	if err != nil {
		return nil
	}
	var out []string
	for _, k := range extbundle.ImageKeys {
		if _, ok := images[k.Name]; !ok {
			out = append(out, k.Name)
		}
	}
	return out
}
