package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// CACertificatesPath is where CACertificates puts the root certificates: the first file Go, OpenSSL and most
// other TLS stacks look for on Linux.
const CACertificatesPath = "/etc/ssl/certs/ca-certificates.crt"

// passwd and group hold root, nobody and the non-root user, as distroless images do.
var (
	passwd = []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		fmt.Sprintf("%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n", NonRootName, NonRootUID, NonRootUID, NonRootName, NonRootName))
	group = []byte("root:x:0:\n" +
		"nobody:x:65534:\n" +
		fmt.Sprintf("%s:x:%d:\n", NonRootName, NonRootUID))
)

// baseFiles are in every image.
func baseFiles() []File {
	return []File{
		Dir("/etc", 0o755, 0, 0),
		RegularFile("/etc/passwd", 0o644, passwd),
		RegularFile("/etc/group", 0o644, group),
		Dir("/home", 0o755, 0, 0),
		Dir("/home/"+NonRootName, 0o700, NonRootUID, NonRootUID),
		Dir("/root", 0o700, 0, 0),
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// CACertificatesPEM returns the Mozilla root certificates of golang.org/x/crypto/x509roots/fallback as one PEM
// bundle, in the bundle's order. Roots that carry a constraint a PEM file cannot express (a distrust-after
// date) are left out rather than trusted without it.
func CACertificatesPEM() []byte {
	var buf bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate})
	}
	return buf.Bytes()
}

// rootFS returns every entry of the image's single layer, sorted by path, parents first: the base files, the
// spec's files (which may replace base files), the binary and any missing parent directories.
func rootFS(s GoImage, binary []byte) []File {
	byPath := map[string]File{}
	for _, f := range baseFiles() {
		byPath[f.Path] = f
	}
	if s.CACertificates {
		byPath[CACertificatesPath] = RegularFile(CACertificatesPath, 0o644, CACertificatesPEM())
	}
	for _, f := range s.Files {
		byPath[f.Path] = f
	}
	byPath[s.Binary] = RegularFile(s.Binary, 0o755, binary)
	for p := range byPath {
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = Dir(dir, 0o755, 0, 0)
			}
		}
	}
	files := make([]File, 0, len(byPath))
	for _, f := range byPath {
		files = append(files, f)
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files
}

// layerTar writes files as an uncompressed tar with fixed times and numeric owners only, so the same files give
// the same bytes.
func layerTar(files []File, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(f.Path, "/"),
			Mode:    tarMode(f.Mode),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: mtime,
		}
		if f.Mode.IsDir() {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarMode converts permission and special bits to the tar header's mode.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// gzipLayer compresses a layer tar (no name, no time in the gzip header) and returns it as an OCI layer.
func gzipLayer(tarData []byte) (v1.Layer, error) {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarData); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	data := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
