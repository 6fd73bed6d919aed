package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, 100 on every Linux ABI.
const userHZ = 100

// processCPU returns the user and system CPU time pid has used so far.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces: count fields after its end.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 13", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// selfCPU returns the CPU time of the benchmark's own process: the pulling client.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuRoles are the processes a pull's CPU is accounted to, in the report's order.
var cpuRoles = []string{"client", "raw server", "parent", "parent gate", "registry"}

// cpuMeter takes the CPU time of every process of one pull path.
type cpuMeter struct {
	pids map[string][]int // role → processes
}

func (b *bench) meter(cr *connected, raw bool) cpuMeter {
	m := cpuMeter{pids: map[string][]int{}}
	if raw {
		m.pids["raw server"] = []int{b.e.raw.cmd.Process.Pid}
	} else {
		m.pids["parent"] = []int{b.e.parent.cmd.Process.Pid}
	}
	if cr != nil {
		m.pids["registry"] = []int{cr.proc.cmd.Process.Pid}
		for _, sc := range cr.sidecars {
			if strings.Contains(sc.name, "parent-gate") {
				m.pids["parent gate"] = append(m.pids["parent gate"], sc.cmd.Process.Pid)
			}
		}
	}
	return m
}

// snapshot returns the CPU time used so far by role.
func (m cpuMeter) snapshot() map[string]time.Duration {
	out := map[string]time.Duration{"client": selfCPU()}
	for role, pids := range m.pids {
		for _, pid := range pids {
			if d, err := processCPU(pid); err == nil {
				out[role] += d
			}
		}
	}
	return out
}

// since returns the CPU time used by role since before.
func (m cpuMeter) since(before map[string]time.Duration) map[string]time.Duration {
	after := m.snapshot()
	out := map[string]time.Duration{}
	for role, d := range after {
		out[role] = d - before[role]
	}
	return out
}
