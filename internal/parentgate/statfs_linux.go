package parentgate

import "syscall"

// volumeUsage returns the bytes in use and the size of the file system holding dir.
func volumeUsage(dir string) (used, size uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Bsize)
	return (st.Blocks - st.Bfree) * bs, st.Blocks * bs, nil
}
