package cluster

import (
	"fmt"
	"os"
	"syscall"
)

// lock takes the state directory's lock, so that concurrent up, down and
// build runs (two test processes, a developer and CI) take turns. The
// returned function releases it.
func (o *Options) lock() (func(), error) {
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	path := o.path("lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		o.logf("waiting for another up, down or build of %s to finish", o.StateDir)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
	}
	return func() { f.Close() }, nil
}
