// Command platforms prints, for every reference of the OCI layout archives `go run ./ci/images build` writes,
// the digest of each platform's manifest: "REF OS/ARCH[/VARIANT] DIGEST" lines. make release attaches each
// platform's SBOM to that manifest, the image the SBOM describes.
//
//	go run ./ci/release/platforms _out/release/images/*.tar
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/connected-registry/connected-registry/internal/testing/imagebuild"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "platforms:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, archives []string, out io.Writer) error {
	if len(archives) == 0 {
		return errors.New("give the archives to read, such as _out/release/images/*.tar")
	}
	for _, path := range archives {
		if err := printArchive(path, out); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

func printArchive(path string, out io.Writer) error {
	ar, err := imagebuild.OpenArchive(path)
	if err != nil {
		return err
	}
	defer ar.Close()
	for _, e := range ar.Entries {
		idx, err := ar.Index(e)
		if err != nil {
			return err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, m := range im.Manifests {
			if m.Platform == nil {
				return fmt.Errorf("manifest %s of %s names no platform", m.Digest, e.Ref)
			}
			fmt.Fprintf(out, "%s %s %s\n", e.Ref, m.Platform.String(), m.Digest)
		}
	}
	return nil
}
