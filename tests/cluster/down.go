package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// stopOrder stops the clients of the API server first, then the pods (through
// CRI, while containerd runs), containerd, the API server and etcd last.
var stopOrder = []string{"kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager", "containerd", "kube-apiserver", "etcd"}

// Down stops every component by PID (with its children and the containerd
// shims of its pods), unmounts what the kubelet and containerd mounted under
// the state directory, removes the pods' network namespaces, kube-proxy's and
// CNI's iptables chains, the containment rules, the Service route and the
// bridge. The state directory (PKI, etcd data, images) is kept. Down is
// idempotent: what is already gone is skipped.
func (o *Options) Down(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	unlock, err := o.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return o.down(ctx)
}

func (o *Options) down(ctx context.Context) error {
	began := time.Now()
	var errs []error
	grace := map[string]time.Duration{}
	for _, c := range o.components() {
		grace[c.name] = c.grace
	}
	for _, name := range stopOrder {
		if name == "containerd" {
			o.criTeardown(ctx)
			// Shims and the container processes under them outlive containerd.
			for _, shim := range o.shims() {
				killPIDs(descendants(shim))
				killPIDs([]int{shim})
			}
		}
		if err := o.stop(name, grace[name]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := o.unmountUnder(o.StateDir); err != nil {
		errs = append(errs, err)
	}
	o.removeLeftoverNetns(ctx)
	if _, err := os.Stat(o.kube()); err == nil && hasChains(ctx, "KUBE-") {
		if out, err := run(ctx, o.kube(), "kube-proxy", "--cleanup"); err != nil {
			o.logf("warning: kube-proxy --cleanup: %v\n%s", err, out)
		}
	}
	// What kube-proxy --cleanup leaves: the kubelet's KUBE-FIREWALL and
	// KUBE-KUBELET-CANARY chains, and the portmap plugin's CNI- chains.
	o.removeChains(ctx, "KUBE-", "CNI-")
	o.removeContainment(ctx)
	o.removeBridge(ctx)
	o.restoreSysctls()
	_ = os.Remove(o.ContainerdSocket)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if o.hasLeftovers() {
		return fmt.Errorf("leftovers remain after down: %s", strings.Join(o.leftovers(), "; "))
	}
	o.logf("down in %s", time.Since(began).Round(100*time.Millisecond))
	return nil
}

func (o *Options) hasLeftovers() bool { return len(o.leftovers()) > 0 }

// leftovers lists what a run leaves on the machine, as short descriptions.
func (o *Options) leftovers() []string {
	var out []string
	for _, c := range o.components() {
		if _, err := os.Stat(o.pidFile(c.name)); err == nil {
			out = append(out, "pid file of "+c.name)
		}
	}
	if n := len(o.shims()); n > 0 {
		out = append(out, fmt.Sprintf("%d containerd shims", n))
	}
	if n := len(mountsUnder(o.StateDir)); n > 0 {
		out = append(out, fmt.Sprintf("%d mounts under %s", n, o.StateDir))
	}
	if _, err := os.Stat("/sys/class/net/" + o.Bridge); err == nil {
		out = append(out, "bridge "+o.Bridge)
	}
	ctx := context.Background()
	for _, r := range o.containmentRules() {
		if o.ruleExists(ctx, r.bin, r.table, r.rule) {
			out = append(out, fmt.Sprintf("%s -t %s rule %s", r.bin, r.table, strings.Join(r.rule, " ")))
		}
	}
	for _, prefix := range []string{"KUBE-", "CNI-"} {
		if hasChains(ctx, prefix) {
			out = append(out, prefix+"* iptables chains")
		}
	}
	return out
}

// wipeData removes what makes a cluster differ from a new one: the etcd data,
// the kubelet's pods, the IP leases and the pod logs. Nothing may be running.
func (o *Options) wipeData() error {
	if err := o.unmountUnder(o.StateDir); err != nil {
		return err
	}
	for _, dir := range []string{"etcd", "kubelet", "pod-logs", filepath.Join("cni", "ipam")} {
		if err := os.RemoveAll(o.path(dir)); err != nil {
			return fmt.Errorf("wipe %s: %w", o.path(dir), err)
		}
	}
	return nil
}
