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
//
// # Why not ko
//
// ko (github.com/google/ko v0.19.1, served by the Go module proxy) was tried offline for both images (2026-12).
// It builds them multi-arch and reproducibly, but not as this project needs:
//   - It has no empty base and no documented base from a file. Offline it works only from its undocumented base
//     cache ($KOCACHE/img, an OCI layout, with the base named by digest) or from a registry already holding a
//     base: the project would still build its own base with go-containerregistry.
//   - It resets the image's configuration: the entrypoint is /ko-app/<name>, Cmd is cleared and a /var/run/ko
//     layer is added. The registry image could not get its default command, environment, port, configuration
//     file or a data directory owned by 65532 without a base of its own.
//   - builds[].main must be a directory of the current module, so the registry engine (a main package of the
//     Distribution module) needs a separate tools module.
//   - --tarball writes one platform only (docker save format), and an OCI layout names no image: `ctr images
//     import` then names nothing, or (--index-name) the wrapper index under another digest than the pushed one.
//   - A push to a loopback registry falls back to plain HTTP without being asked, and its SBOMs add tags.
//   - Its own build costs about 13 minutes on a cold 2-core machine, on top of the images.
package imagebuild
