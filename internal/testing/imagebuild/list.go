package imagebuild

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ImageListName is the file in an image directory that lists its archives' references.
const ImageListName = "images.txt"

// ImageListLine is one line of images.txt: "REF DIGEST ARCHIVE", the reference, its index digest and the
// archive's file name in the directory.
type ImageListLine struct {
	Ref, Digest, Archive string
}

// ScanImageDir reads the index.json of every *.tar in dir and returns one line per reference, sorted by
// reference.
func ScanImageDir(dir string) ([]ImageListLine, error) {
	tars, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return nil, err
	}
	var lines []ImageListLine
	for _, t := range tars {
		entries, err := ReadArchiveEntries(t)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			lines = append(lines, ImageListLine{Ref: e.Ref, Digest: e.Digest.String(), Archive: filepath.Base(t)})
		}
	}
	slices.SortFunc(lines, func(a, b ImageListLine) int { return strings.Compare(a.Ref, b.Ref) })
	return lines, nil
}

// WriteImageList (re)writes dir/images.txt from the archives in dir.
func WriteImageList(dir string) ([]ImageListLine, error) {
	lines, err := ScanImageDir(dir)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, l := range lines {
		fmt.Fprintf(&buf, "%s %s %s\n", l.Ref, l.Digest, l.Archive)
	}
	if err := os.WriteFile(filepath.Join(dir, ImageListName), buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return lines, nil
}
