package cluster

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestDaemonsInheritNoDescriptor: a descriptor the caller inherited without close-on-exec (flock(1)'s lock, for
// one) does not reach the processes the cluster starts.
func TestDaemonsInheritNoDescriptor(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "lock")
	fd, err := syscall.Open(lock, syscall.O_CREAT|syscall.O_RDWR, 0o600) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	inherited := func() bool {
		out, _ := exec.Command("readlink", "/proc/self/fd/"+strconv.Itoa(fd)).Output()
		return strings.TrimSpace(string(out)) == lock
	}
	if !inherited() {
		t.Skip("this platform does not pass a descriptor without close-on-exec to children")
	}
	closeInheritedFiles()
	if inherited() {
		t.Fatalf("descriptor %d still reaches a child process", fd)
	}
}
