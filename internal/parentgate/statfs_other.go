//go:build !linux

package parentgate

import "errors"

// volumeUsage is read with statfs, on Linux only.
func volumeUsage(string) (used, size uint64, err error) {
	return 0, 0, errors.New("statfs is read on Linux only")
}
