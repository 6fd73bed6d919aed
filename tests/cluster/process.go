package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A component is one background process of the cluster.
type component struct {
	name string
	argv []string
	// grace is how long it may take to stop after SIGTERM before SIGKILL.
	grace time.Duration
}

// procID identifies a process across PID reuse: its PID and its start time
// in clock ticks since boot (field 22 of /proc/PID/stat).
type procID struct {
	pid   int
	start uint64
}

func (o *Options) pidFile(name string) string { return o.path("run", name+".pid") }

// LogFile is the log of a component (etcd, kube-apiserver, containerd, ...).
func (o *Options) LogFile(name string) string { return o.path("logs", name+".log") }

// start runs c in the background in its own session, with its output in its
// log file, and records its PID and start time.
func (o *Options) start(c component) error {
	if err := os.MkdirAll(o.path("run"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(o.path("logs"), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(o.LogFile(c.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log of %s: %w", c.name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== %s %s\n", time.Now().Format(time.RFC3339), strings.Join(c.argv, " "))
	closeInheritedFiles()
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = o.StateDir
	cmd.Env = append(os.Environ(), "PATH="+o.BinDir()+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	// A session of its own: not killed with the caller's terminal or process
	// group, and stopped as a group by Down.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.name, err)
	}
	id := procID{pid: cmd.Process.Pid}
	if st, err := readStat(id.pid); err == nil {
		id.start = st.start
	}
	// Reap it in the background while this process lives, so a crash is seen
	// as a dead process and not as a zombie.
	go func() { _ = cmd.Wait() }()
	data := fmt.Sprintf("%d %d\n", id.pid, id.start)
	return os.WriteFile(o.pidFile(c.name), []byte(data), 0o644)
}

// running returns the process recorded for name when it is still alive.
func (o *Options) running(name string) (procID, bool) {
	data, err := os.ReadFile(o.pidFile(name))
	if err != nil {
		return procID{}, false
	}
	var id procID
	if _, err := fmt.Sscanf(string(data), "%d %d", &id.pid, &id.start); err != nil || id.pid <= 1 {
		return procID{}, false
	}
	return id, id.alive()
}

func (id procID) alive() bool {
	st, err := readStat(id.pid)
	if err != nil || st.state == 'Z' || st.state == 'X' {
		return false
	}
	return id.start == 0 || st.start == id.start
}

type procStat struct {
	pid, ppid, pgid int
	state           byte
	start           uint64
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may hold spaces: parse after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	st := procStat{pid: pid, state: f[0][0]}
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgid, _ = strconv.Atoi(f[2])
	st.start, _ = strconv.ParseUint(f[19], 10, 64)
	return st, nil
}

// allProcs returns the stat of every process.
func allProcs() []procStat {
	ents, _ := os.ReadDir("/proc")
	var ps []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			ps = append(ps, st)
		}
	}
	return ps
}

// descendants returns the PIDs of every descendant of pid, deepest first.
func descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range allProcs() {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			walk(c)
			out = append(out, c)
		}
	}
	walk(pid)
	return out
}

// stop stops the process recorded for name and its children: SIGTERM to the
// process and its session's group, SIGKILL after grace, then SIGKILL to any
// descendant left. It is a no-op when the process is gone.
func (o *Options) stop(name string, grace time.Duration) error {
	id, ok := o.running(name)
	if !ok {
		_ = os.Remove(o.pidFile(name))
		return nil
	}
	kids := descendants(id.pid)
	_ = syscall.Kill(-id.pid, syscall.SIGTERM)
	_ = syscall.Kill(id.pid, syscall.SIGTERM)
	if !waitGone(id, grace) {
		o.logf("%s (pid %d) still running after %s: killing it", name, id.pid, grace)
		_ = syscall.Kill(-id.pid, syscall.SIGKILL)
		_ = syscall.Kill(id.pid, syscall.SIGKILL)
		if !waitGone(id, 10*time.Second) {
			return fmt.Errorf("%s (pid %d) survived SIGKILL", name, id.pid)
		}
	}
	killPIDs(kids)
	return os.Remove(o.pidFile(name))
}

// killPIDs sends SIGKILL to each PID still alive.
func killPIDs(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

func waitGone(id procID, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for id.alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// shims returns the containerd shims serving our containerd (by its socket),
// whatever their process group: shims detach from containerd.
func (o *Options) shims() []int {
	var out []int
	for _, p := range allProcs() {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == o.ContainerdSocket {
				out = append(out, p.pid)
			}
		}
	}
	return out
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dumpLogs prints the tail of every component's log.
func (o *Options) dumpLogs() {
	files, _ := filepath.Glob(o.path("logs", "*.log"))
	sort.Strings(files)
	for _, f := range files {
		fmt.Fprintf(o.Out, "---- tail of %s\n%s\n", f, tail(f, o.lastLogTail))
	}
}

var errTimeout = errors.New("timed out")

// poll calls check every interval until it returns nil or d passes; the
// error names what was awaited and the last reason.
func poll(what string, d time.Duration, check func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return nil
		}
		var stop backoffStop
		if errors.As(err, &stop) {
			return fmt.Errorf("%s: %w", what, stop.error)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w after %s: %v", what, errTimeout, d, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// closeInheritedFiles marks every descriptor above stderr close-on-exec, so the long-lived daemons inherit
// none of the caller's: `flock LOCK go test …` hands its lock to everything it starts, and a cluster brought up
// inside that lock would otherwise hold it for as long as it runs.
func closeInheritedFiles() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
