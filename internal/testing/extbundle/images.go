package extbundle

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// AzureImage is one entry of global.azure.images: the image is <Registry>/<Image>@<Digest>.
type AzureImage struct {
	Registry string `json:"registry"`
	Image    string `json:"image"`
	Digest   string `json:"digest"`
}

// Ref is the image's reference by digest.
func (a AzureImage) Ref() string { return a.Registry + "/" + a.Image + "@" + a.Digest }

// ImageKey names one entry of global.azure.images and the repositories whose images fill it, by their path's
// last two elements, in order of preference.
type ImageKey struct {
	Name string
	// Repos are repository paths without the registry, matched as suffixes ("connected-registry/distribution").
	Repos []string
	// Needed says when the release runs the image.
	Needed string
}

// ImageKeys are the entries of global.azure.images the chart and the bundle's cert-manager subchart read.
var ImageKeys = []ImageKey{
	{"connectedRegistry", []string{"connected-registry/connected-registry"}, "always"},
	{"registry", []string{"connected-registry/distribution", "library/registry"}, "registry.engine=distribution (the default)"},
	{"acrConnectedRegistry", []string{"acr/connected-registry"}, "registry.engine=acr"},
	{"certManagerController", []string{"jetstack/cert-manager-controller"}, "cert-manager.install=true"},
	{"certManagerWebhook", []string{"jetstack/cert-manager-webhook"}, "cert-manager.install=true"},
	{"certManagerCainjector", []string{"jetstack/cert-manager-cainjector"}, "cert-manager.install=true"},
	{"certManagerAcmesolver", []string{"jetstack/cert-manager-acmesolver"}, "cert-manager.install=true"},
	{"certManagerStartupapicheck", []string{"jetstack/cert-manager-startupapicheck"}, "cert-manager.install=true"},
}

// ErrBadImageList is returned for a line of an images file that is not "REF DIGEST [ARCHIVE]".
var ErrBadImageList = errors.New(`an images file holds lines "REF DIGEST [ARCHIVE]" (as ci/images build writes images.txt)`)

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ReadImageLists reads images files (ci/images build's images.txt, or any file of "REF DIGEST" lines) and returns
// each reference's digest. Blank lines and lines starting with # are skipped.
func ReadImageLists(files ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fields := strings.Fields(line)
			if len(fields) < 2 || len(fields) > 3 || !digestRE.MatchString(fields[1]) {
				fh.Close()
				return nil, fmt.Errorf("%s:%d: %w", f, n, ErrBadImageList)
			}
			if d, ok := out[fields[0]]; ok && d != fields[1] {
				fh.Close()
				return nil, fmt.Errorf("%s:%d: %s has two digests, %s and %s", f, n, fields[0], d, fields[1])
			}
			out[fields[0]] = fields[1]
		}
		err = sc.Err()
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AzureImages fills global.azure.images from references and their digests: each key takes the reference of its
// most preferred repository (the first such reference in sorted order). It returns the keys it found no image
// for.
func AzureImages(digests map[string]string) (map[string]AzureImage, []string, error) {
	refs := make([]string, 0, len(digests))
	for r := range digests {
		refs = append(refs, r)
	}
	slices.Sort(refs)
	out := map[string]AzureImage{}
	var missing []string
	for _, k := range ImageKeys {
		found := false
		for _, repo := range k.Repos {
			for _, r := range refs {
				ref, err := name.ParseReference(r)
				if err != nil {
					return nil, nil, fmt.Errorf("image reference %q: %w", r, err)
				}
				repoPath := ref.Context().RepositoryStr()
				if repoPath != repo && !strings.HasSuffix(repoPath, "/"+repo) {
					continue
				}
				registry := ref.Context().RegistryStr()
				if dir := path.Dir(repoPath); dir != "." {
					registry += "/" + dir
				}
				out[k.Name] = AzureImage{Registry: registry, Image: path.Base(repoPath), Digest: digests[r]}
				found = true
				break
			}
			if found {
				break
			}
		}
		if !found {
			missing = append(missing, k.Name)
		}
	}
	return out, missing, nil
}
