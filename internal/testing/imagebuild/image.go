package imagebuild

import (
	"context"
	"fmt"
	"maps"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BuildGoImage builds spec with the zero Builder: `go` from PATH and the process environment.
func BuildGoImage(ctx context.Context, spec GoImage) (v1.ImageIndex, error) {
	return (&Builder{}).Build(ctx, spec)
}

// Build cross-compiles the spec's program for each of its platforms, makes one image per platform on an empty
// base and returns them as an OCI image index, in the spec's platform order. The same sources, spec and Go
// toolchain give the same index digest.
func (b *Builder) Build(ctx context.Context, spec GoImage) (v1.ImageIndex, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	s := spec.withDefaults()
	bins, err := b.compile(ctx, s)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, p := range s.Platforms {
		img, err := platformImage(s, p, bins[i])
		bins[i] = nil // the layer holds its compressed copy
		if err != nil {
			return nil, fmt.Errorf("image of %s for %s: %w", s.Package, p.String(), err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}},
		})
	}
	if len(s.Labels) > 0 {
		idx = mutate.Annotations(idx, maps.Clone(s.Labels)).(v1.ImageIndex)
	}
	return idx, nil
}

// platformImage makes the image of one platform from its binary.
func platformImage(s GoImage, p v1.Platform, binary []byte) (v1.Image, error) {
	data, err := layerTar(rootFS(s, binary), s.Created)
	if err != nil {
		return nil, err
	}
	layer, err := gzipLayer(data)
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	cfg.Created = v1.Time{Time: s.Created}
	cfg.History = []v1.History{{
		Created:   v1.Time{Time: s.Created},
		CreatedBy: "go build -trimpath -ldflags \"-s -w\" " + s.Package,
		Comment:   "connected-registry imagebuild",
	}}
	cfg.Config = v1.Config{
		Entrypoint: slices.Clone(s.Entrypoint),
		Cmd:        slices.Clone(s.Cmd),
		User:       s.User,
		Env:        append([]string{DefaultPath}, s.Env...),
		WorkingDir: s.WorkingDir,
		Labels:     maps.Clone(s.Labels),
	}
	if len(s.ExposedPorts) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, port := range s.ExposedPorts {
			cfg.Config.ExposedPorts[port] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cfg)
}
