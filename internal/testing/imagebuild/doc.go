// Package imagebuild builds container images from Go programs without Docker, with go-containerregistry.
//
// An image is one static Go binary, cross-compiled per platform (CGO_ENABLED=0, -trimpath, -ldflags "-s -w"),
// on an empty base: a single layer holding the binary, a minimal /etc/passwd and /etc/group (root, nobody and the
// non-root user 65532 "nonroot"), /tmp and any extra files of the spec. The platforms are combined into an OCI
// image index. Every timestamp is the Unix epoch and every file list is sorted, so the same sources and Go
// toolchain give the same digests.
//
// Indexes are written as OCI image layout tarballs (WriteArchive): `oci-layout`, `index.json`, then
// `blobs/sha256/<hex>` in digest order. Each index.json entry names its image with both the
// `io.containerd.image.name` and `org.opencontainers.image.ref.name` annotations (full references), which is
// what `ctr images import` (containerd 1.6 and later) reads:
//
//	ctr -n k8s.io images import --all-platforms connected-registry.tar
//
// A RegistryClient pushes indexes (PushIndex, PushArchive) to any registry over HTTPS only, trusting a given
// CA: go-containerregistry falls back to plain HTTP for localhost, loopback and private addresses, and the
// client refuses every plain-HTTP request unless it is told to speak plain HTTP only (InsecureHTTP).
//
// ProjectImages lists the images of this project (the in-cluster binary, the Distribution registry and the test
// workload); `go run ./ci/images build` writes them to _out/images with an images.txt of
// "REF DIGEST ARCHIVE" lines, and `go run ./ci/images push` seeds or releases them.
package imagebuild
