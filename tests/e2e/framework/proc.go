package framework

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ContainerPID returns the node's pid of a process of the pod with the given UID whose executable's base name is
// exe and whose first argument is arg, such as the registry container's `registry serve`: the test node is this
// machine, so the test can look at a container from outside, through /proc.
func ContainerPID(podUID, exe, arg string) (string, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return "", err
	}
	marks := []string{podUID, strings.ReplaceAll(podUID, "-", "_")}
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) < 2 || filepath.Base(args[0]) != exe || args[1] != arg {
			continue
		}
		cgroup, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cgroup"))
		if err != nil {
			continue
		}
		for _, m := range marks {
			if strings.Contains(string(cgroup), m) {
				return p.Name(), nil
			}
		}
	}
	return "", fmt.Errorf("no %s %s process of pod %s on the node", exe, arg, podUID)
}
