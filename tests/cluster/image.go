package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ContainerdNamespace is the containerd namespace of the CRI plugin: images
// the kubelet can use must be imported there.
const ContainerdNamespace = "k8s.io"

// AnnotationImageName is the index annotation ctr reads an imported image's
// name from.
const AnnotationImageName = "io.containerd.image.name"

// BinaryImage returns a single-platform OCI image for this machine holding
// one static binary at /NAME as its entrypoint, on an empty base, running as
// user (for example "65535:65535"). Its creation time is fixed so the same
// binary gives the same digest.
func BinaryImage(binary, user string) (v1.Image, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(binary)
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
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
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cfg.Config.Entrypoint = []string{"/" + name}
	cfg.Config.User = user
	return mutate.ConfigFile(img, cfg)
}

// WriteOCITarball writes img as an OCI image layout in a tar archive at path,
// its index entry annotated with ref (a full reference such as
// localhost/cr-cluster/pause:v1), as ctr images import expects.
func WriteOCITarball(img v1.Image, ref, path string) error {
	dir, err := os.MkdirTemp("", "oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	ann := map[string]string{AnnotationImageName: ref, "org.opencontainers.image.ref.name": ref}
	if err := lp.AppendImage(img, layout.WithAnnotations(ann)); err != nil {
		return err
	}
	return tarDir(dir, path)
}

// tarDir writes the regular files and directories under dir to a tar at path.
func tarDir(dir, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ImportImage imports an OCI (or docker-archive) tarball into the node's
// containerd, namespace k8s.io, unpacked for the overlayfs snapshotter, so
// pods can use its images with imagePullPolicy Never or IfNotPresent. The
// image is named from the io.containerd.image.name annotation of its index
// entry. It is the Go form of:
//
//	ctr --address /run/containerd/containerd.sock -n k8s.io images import FILE
func (o *Options) ImportImage(ctx context.Context, tarPath string) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", o.ContainerdSocket, "-n", ContainerdNamespace,
		"images", "import", tarPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("import %s into containerd: %w: %s", tarPath, err, bytes.TrimSpace(out))
	}
	return nil
}

// ensurePauseImage builds the pause image from bin/pause and imports it.
func (o *Options) ensurePauseImage(ctx context.Context) error {
	img, err := BinaryImage(o.path("bin", "pause"), "65535:65535")
	if err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	if err := os.MkdirAll(o.path("images"), 0o755); err != nil {
		return err
	}
	tarPath := o.path("images", "pause.tar")
	if err := WriteOCITarball(img, o.PauseImage, tarPath); err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	return o.ImportImage(ctx, tarPath)
}
