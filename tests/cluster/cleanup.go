package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// mountsUnder returns the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	prefix := strings.TrimRight(dir, "/") + "/"
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, prefix) && !seen[mp] {
			seen[mp] = true
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount decodes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount below dir, repeating while some remain
// (a mount point may be stacked).
func (o *Options) unmountUnder(dir string) error {
	var mps []string
	for range 5 {
		mps = mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
				o.logf("warning: unmount %s: %v", mp, err)
			}
		}
	}
	return fmt.Errorf("still mounted under %s: %s", dir, strings.Join(mps, ", "))
}

// criTeardown stops and removes every pod sandbox through containerd's CRI,
// so containerd runs CNI DEL (veths, IP leases) and removes the network
// namespaces. It is best effort: leftovers are removed by the later steps.
func (o *Options) criTeardown(ctx context.Context) {
	if _, ok := o.running("containerd"); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+o.ContainerdSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		o.logf("warning: CRI client: %v", err)
		return
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	resp, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		o.logf("warning: list pod sandboxes: %v", err)
		return
	}
	for _, sb := range resp.Items {
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			o.logf("warning: stop sandbox %s/%s: %v", sb.Metadata.GetNamespace(), sb.Metadata.GetName(), err)
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			o.logf("warning: remove sandbox %s/%s: %v", sb.Metadata.GetNamespace(), sb.Metadata.GetName(), err)
		}
	}
	if n := len(resp.Items); n > 0 {
		o.logf("removed %d pod sandboxes", n)
	}
}

// netnsDir is where containerd 1.6 bind-mounts the pods' network namespaces.
const netnsDir = "/var/run/netns"

// removeLeftoverNetns unmounts and deletes the CNI network namespaces that
// hold an address of our pod subnet (pods of an earlier, killed run).
func (o *Options) removeLeftoverNetns(ctx context.Context) {
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "cni-") {
			continue
		}
		out, err := exec.CommandContext(ctx, "ip", "-n", e.Name(), "-4", "-o", "addr", "show").Output()
		if err != nil || !o.holdsPodAddress(string(out)) {
			continue
		}
		p := filepath.Join(netnsDir, e.Name())
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
		if err := os.Remove(p); err != nil {
			o.logf("warning: remove %s: %v", p, err)
		}
	}
}

func (o *Options) holdsPodAddress(ipAddrOutput string) bool {
	for _, f := range strings.Fields(ipAddrOutput) {
		if ip, _, err := net.ParseCIDR(f); err == nil && o.bridgeNet.Contains(ip) {
			return true
		}
	}
	return false
}

// chainTables are the iptables tables Kubernetes and CNI add chains to.
var chainTables = []string{"filter", "nat", "mangle"}

// removeChains deletes, in every table of iptables and ip6tables, the chains
// whose name starts with one of prefixes and every rule jumping to them.
// Kubernetes (kubelet, kube-proxy) owns the KUBE- chains and the CNI plugins
// the CNI- chains; on this machine only the test cluster creates them.
func (o *Options) removeChains(ctx context.Context, prefixes ...string) {
	owned := func(name string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, table := range chainTables {
			out, err := run(ctx, bin, "-w", "-t", table, "-S")
			if err != nil {
				continue
			}
			var chains, all []string
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && (f[0] == "-N" || f[0] == "-P") {
					all = append(all, f[1])
					if f[0] == "-N" && owned(f[1]) {
						chains = append(chains, f[1])
					}
				}
			}
			if len(chains) == 0 {
				continue
			}
			// Jumps from chains we keep, deleted by number, last first.
			for _, c := range all {
				if owned(c) {
					continue
				}
				nums := o.jumpsTo(ctx, bin, table, c, owned)
				for i := len(nums) - 1; i >= 0; i-- {
					_, _ = run(ctx, bin, "-w", "-t", table, "-D", c, nums[i])
				}
			}
			for _, c := range chains {
				_, _ = run(ctx, bin, "-w", "-t", table, "-F", c)
			}
			for _, c := range chains {
				if _, err := run(ctx, bin, "-w", "-t", table, "-X", c); err != nil {
					o.logf("warning: %v", err)
				}
			}
		}
	}
}

// jumpsTo returns the numbers of the rules of chain whose target is owned.
func (o *Options) jumpsTo(ctx context.Context, bin, table, chain string, owned func(string) bool) []string {
	out, err := run(ctx, bin, "-w", "-t", table, "-L", chain, "-n", "--line-numbers")
	if err != nil {
		return nil
	}
	var nums []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && owned(f[1]) {
			if _, err := fmt.Sscanf(f[0], "%d", new(int)); err == nil {
				nums = append(nums, f[0])
			}
		}
	}
	return nums
}

// hasChains reports whether some table holds a chain starting with prefix.
func hasChains(ctx context.Context, prefix string) bool {
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, table := range chainTables {
			out, err := run(ctx, bin, "-w", "-t", table, "-S")
			if err == nil && strings.Contains(out, "-N "+prefix) {
				return true
			}
		}
	}
	return false
}
