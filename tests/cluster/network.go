package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ContainmentRule is the FORWARD rule that keeps every packet from a pod on
// the machine: whatever enters from the bridge and would leave through any
// other interface is dropped. It is inserted first in filter/FORWARD (and
// re-inserted first after kube-proxy adds its own jumps), and mirrored in
// mangle/FORWARD, which every forwarded packet crosses before filter.
func (o *Options) ContainmentRule() []string {
	return []string{"FORWARD", "-i", o.Bridge, "!", "-o", o.Bridge, "-j", "DROP"}
}

// containmentRules are the rules Up adds and Down removes: table and rule, for IPv4 and IPv6.
func (o *Options) containmentRules() []struct {
	bin, table string
	rule       []string
} {
	type r = struct {
		bin, table string
		rule       []string
	}
	var out []r
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "mangle"} {
			out = append(out, r{bin, table, o.ContainmentRule()})
		}
	}
	return out
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ensureContainment puts the DROP rules first in FORWARD (removing any copy
// further down first, so the rule is there exactly once, at the top).
func (o *Options) ensureContainment(ctx context.Context) error {
	for _, r := range o.containmentRules() {
		for o.ruleExists(ctx, r.bin, r.table, r.rule) {
			if _, err := run(ctx, r.bin, append([]string{"-w", "-t", r.table, "-D"}, r.rule...)...); err != nil {
				return err
			}
		}
		args := append([]string{"-w", "-t", r.table, "-I", r.rule[0], "1"}, r.rule[1:]...)
		if _, err := run(ctx, r.bin, args...); err != nil {
			if r.bin == "ip6tables" {
				o.logf("warning: %v (pods have no IPv6 address anyway)", err)
				continue
			}
			return err
		}
	}
	return nil
}

// removeContainment deletes every copy of the DROP rules.
func (o *Options) removeContainment(ctx context.Context) {
	for _, r := range o.containmentRules() {
		for i := 0; i < 10 && o.ruleExists(ctx, r.bin, r.table, r.rule); i++ {
			_, _ = run(ctx, r.bin, append([]string{"-w", "-t", r.table, "-D"}, r.rule...)...)
		}
	}
}

func (o *Options) ruleExists(ctx context.Context, bin, table string, rule []string) bool {
	if _, err := exec.LookPath(bin); err != nil {
		return false
	}
	err := exec.CommandContext(ctx, bin, append([]string{"-w", "-t", table, "-C"}, rule...)...).Run()
	return err == nil
}

// ContainmentInPlace reports whether the filter/FORWARD DROP rule for the
// bridge is the first rule of the chain.
func (o *Options) ContainmentInPlace(ctx context.Context) error {
	out, err := run(ctx, "iptables", "-w", "-t", "filter", "-S", "FORWARD")
	if err != nil {
		return err
	}
	want := fmt.Sprintf("-A FORWARD -i %s ! -o %s -j DROP", o.Bridge, o.Bridge)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "-A ") {
			if line != want {
				return fmt.Errorf("first FORWARD rule is %q, want %q", line, want)
			}
			return nil
		}
	}
	return fmt.Errorf("FORWARD has no rule, want %q", want)
}

// ensureBridge creates the bridge with its address, up, and routes the
// Service range onto it (never onto eth0).
func (o *Options) ensureBridge(ctx context.Context) error {
	if _, err := os.Stat("/sys/class/net/" + o.Bridge); err != nil {
		if _, err := run(ctx, "ip", "link", "add", o.Bridge, "type", "bridge"); err != nil {
			return err
		}
	}
	addr := fmt.Sprintf("%s/%d", o.bridgeIP, prefixLen(o))
	if out, _ := run(ctx, "ip", "-4", "-o", "addr", "show", "dev", o.Bridge); !strings.Contains(out, " "+addr+" ") {
		if _, err := run(ctx, "ip", "addr", "replace", addr, "dev", o.Bridge); err != nil {
			return err
		}
	}
	if _, err := run(ctx, "ip", "link", "set", o.Bridge, "up"); err != nil {
		return err
	}
	if _, err := run(ctx, "ip", "route", "replace", o.serviceNet.String(), "dev", o.Bridge, "src", o.bridgeIP.String()); err != nil {
		return err
	}
	return o.setSysctls()
}

// sysctls Up sets; their earlier values are saved in run/sysctl.orig and
// restored by Down.
var sysctls = []struct{ path, val string }{
	// Service traffic DNATed back onto the bridge is forwarded (bridge to
	// bridge only: the containment rules drop anything else).
	{"/proc/sys/net/ipv4/ip_forward", "1"},
	{"/proc/sys/net/bridge/bridge-nf-call-iptables", "1"},
}

func (o *Options) setSysctls() error {
	saved := o.path("run", "sysctl.orig")
	if _, err := os.Stat(saved); err != nil {
		var b strings.Builder
		for _, s := range sysctls {
			if v, err := os.ReadFile(s.path); err == nil {
				fmt.Fprintf(&b, "%s %s\n", s.path, strings.TrimSpace(string(v)))
			}
		}
		if err := os.MkdirAll(o.path("run"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(saved, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	for _, s := range sysctls {
		if err := os.WriteFile(s.path, []byte(s.val), 0o644); err != nil {
			return fmt.Errorf("set %s=%s: %w", s.path, s.val, err)
		}
	}
	return nil
}

// restoreSysctls puts back the values saved by setSysctls.
func (o *Options) restoreSysctls() {
	saved := o.path("run", "sysctl.orig")
	data, err := os.ReadFile(saved)
	if err != nil {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if path, val, ok := strings.Cut(line, " "); ok && strings.HasPrefix(path, "/proc/sys/") {
			if err := os.WriteFile(path, []byte(val), 0o644); err != nil {
				o.logf("warning: restore %s=%s: %v", path, val, err)
			}
		}
	}
	_ = os.Remove(saved)
}

func prefixLen(o *Options) int {
	ones, _ := o.bridgeNet.Mask.Size()
	return ones
}

// removeBridge deletes the Service route and the bridge (and with it the
// veths of any pod left over).
func (o *Options) removeBridge(ctx context.Context) {
	_, _ = run(ctx, "ip", "route", "del", o.serviceNet.String(), "dev", o.Bridge)
	if _, err := os.Stat("/sys/class/net/" + o.Bridge); err == nil {
		if _, err := run(ctx, "ip", "link", "del", o.Bridge); err != nil {
			o.logf("warning: %v", err)
		}
	}
}
