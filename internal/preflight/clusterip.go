package preflight

import (
	"context"
	"fmt"
	"math/big"
	"net/netip"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/connected-registry/connected-registry/internal/english"
)

// checkClusterIP: service.clusterIP lies in the service CIDR and no other Service holds it. The release's own
// Service (on upgrade) holds it rightfully, and its address cannot change. The ServiceCIDR and IPAddress APIs
// (networking.k8s.io/v1) give the range and the holder's name when served; a server-side dry-run create of the
// release's Service asks the API server's own allocator, which is the honest test on every cluster.
func checkClusterIP(ctx context.Context, c *Checker) (Status, string) {
	cfg := c.Config
	ip, err := netip.ParseAddr(cfg.ClusterIP)
	if err != nil {
		return fail("service.clusterIP %q is not an IP address: set it to a free address inside the cluster's service CIDR, like 10.96.0.50", cfg.ClusterIP)
	}
	ip = ip.Unmap()

	own, err := c.Client.CoreV1().Services(cfg.Namespace).Get(ctx, cfg.Service, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		own = nil
	case err != nil:
		return warn("cannot read the release's Service %s/%s to check service.clusterIP: %v", cfg.Namespace, cfg.Service, err)
	}
	if own != nil {
		if have, err := netip.ParseAddr(own.Spec.ClusterIP); err == nil && have.Unmap() == ip {
			return ok("service.clusterIP %s belongs to this release's Service %s/%s", ip, cfg.Namespace, cfg.Service)
		}
		// Say first when the new address is taken: uninstalling to move would not free it. (Without the IPAddress
		// API, before Kubernetes 1.33, the holder stays unnamed.)
		if owner, err := c.ipOwner(ctx, ip); err == nil && owner != "" {
			return fail("service.clusterIP %s is taken by %s; besides, this release's Service %s/%s has %s, and a Service's ClusterIP cannot change: keep service.clusterIP=%s (the nodes trust that address)",
				ip, owner, cfg.Namespace, cfg.Service, own.Spec.ClusterIP, own.Spec.ClusterIP)
		}
		return fail("service.clusterIP is %s, but this release's Service %s/%s has %s and a Service's ClusterIP cannot change: keep service.clusterIP=%s (the nodes trust that address), or uninstall the release and install it again with the new address",
			ip, cfg.Namespace, cfg.Service, own.Spec.ClusterIP, own.Spec.ClusterIP)
	}

	cidrs, err := c.serviceCIDRs(ctx)
	if err != nil {
		c.debugf("ServiceCIDRs unavailable, relying on the dry run: %v", err)
	}
	if len(cidrs) > 0 && !containsAddr(cidrs, ip) {
		return fail("service.clusterIP %s is outside the cluster's service CIDR %s: %s", ip, joinPrefixes(cidrs), c.suggest(ctx, cidrs, ip))
	}
	owner, err := c.ipOwner(ctx, ip)
	if err != nil {
		c.debugf("IPAddresses unavailable, relying on the dry run: %v", err)
	}
	if owner != "" {
		return fail("service.clusterIP %s is taken by %s: %s", ip, owner, c.suggest(ctx, cidrs, ip))
	}

	result, detail := c.dryRun(ctx, ip)
	switch result {
	case dryRunFree:
		if len(cidrs) > 0 {
			return ok("service.clusterIP %s is inside the service CIDR %s and free", ip, joinPrefixes(cidrs))
		}
		return ok("service.clusterIP %s is inside the service range and free (a dry-run create of Service %s/%s succeeded)", ip, cfg.Namespace, cfg.Service)
	case dryRunTaken:
		return fail("service.clusterIP %s is already taken by another Service: %s", ip, c.suggest(ctx, cidrs, ip))
	case dryRunOutOfRange:
		if p, err := netip.ParsePrefix(detail); err == nil {
			cidrs = []netip.Prefix{p}
		}
		return fail("service.clusterIP %s is outside the cluster's service CIDR %s: %s", ip, detail, c.suggest(ctx, cidrs, ip))
	}
	if len(cidrs) > 0 {
		return ok("service.clusterIP %s is inside the service CIDR %s and no IPAddress holds it (the dry-run create could not run: %s)", ip, joinPrefixes(cidrs), detail)
	}
	return warn("cannot tell whether service.clusterIP %s is free: the dry-run create of Service %s/%s failed (%s), and the cluster does not serve the ServiceCIDR API", ip, cfg.Namespace, cfg.Service, detail)
}

// serviceCIDRs lists the service ranges, or returns an error when the API is not served or not allowed.
func (c *Checker) serviceCIDRs(ctx context.Context) ([]netip.Prefix, error) {
	list, err := c.Client.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, sc := range list.Items {
		if sc.DeletionTimestamp != nil {
			continue
		}
		for _, s := range sc.Spec.CIDRs {
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, p.Masked())
			}
		}
	}
	return out, nil
}

// ipOwner names the Service holding ip through the IPAddress API, "" when none does.
func (c *Checker) ipOwner(ctx context.Context, ip netip.Addr) (string, error) {
	a, err := c.Client.NetworkingV1().IPAddresses().Get(ctx, ip.String(), metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && !c.ipAddressAPIMissing(ctx) {
			return "", nil
		}
		return "", err
	}
	if p := a.Spec.ParentRef; p != nil {
		kind := strings.TrimSuffix(p.Resource, "s")
		if p.Resource == "services" && p.Group == "" {
			kind = "Service"
		}
		if p.Namespace != "" {
			return fmt.Sprintf("%s %s/%s", kind, p.Namespace, p.Name), nil
		}
		return kind + " " + p.Name, nil
	}
	return "an IPAddress without an owner", nil
}

// ipAddressAPIMissing tells a 404 for the object from a 404 for the whole API.
func (c *Checker) ipAddressAPIMissing(ctx context.Context) bool {
	_, err := c.Client.NetworkingV1().IPAddresses().List(ctx, metav1.ListOptions{Limit: 1})
	return err != nil
}

type dryRunResult int

const (
	dryRunFree dryRunResult = iota
	dryRunTaken
	dryRunOutOfRange
	dryRunInconclusive
)

var validRange = regexp.MustCompile(`range of valid IPs is ([0-9A-Fa-f.:/]+)`)

// dryRun creates the release's Service with ip as the API server would on install, without persisting it.
// detail is the service range for dryRunOutOfRange, the error for dryRunInconclusive.
func (c *Checker) dryRun(ctx context.Context, ip netip.Addr) (dryRunResult, string) {
	return c.dryRunNamed(ctx, c.Config.Service, ip)
}

func (c *Checker) dryRunNamed(ctx context.Context, name string, ip netip.Addr) (dryRunResult, string) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Config.Namespace},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: ip.String(),
			Ports:     []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromString("https"), Protocol: corev1.ProtocolTCP}},
		},
	}
	_, err := c.Client.CoreV1().Services(c.Config.Namespace).Create(ctx, svc, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil {
		return dryRunFree, ""
	}
	msg := err.Error()
	switch {
	case apierrors.IsInvalid(err) && strings.Contains(msg, "already allocated"):
		return dryRunTaken, ""
	case apierrors.IsInvalid(err) && strings.Contains(msg, "not in the valid range"):
		if m := validRange.FindStringSubmatch(msg); m != nil {
			return dryRunOutOfRange, m[1]
		}
		return dryRunOutOfRange, "range"
	}
	return dryRunInconclusive, msg
}

// suggest proposes a free address from the lower, static band of the service range, which Kubernetes keeps for
// fixed ClusterIPs (KEP-3070): the first min(max(16, size/16), 256) addresses.
func (c *Checker) suggest(ctx context.Context, cidrs []netip.Prefix, avoid netip.Addr) string {
	prefix, found := pickPrefix(cidrs, avoid)
	if !found {
		return "choose a free address inside the cluster's service CIDR (kubectl get servicecidr)"
	}
	band := staticBand(prefix)
	taken, listed := c.takenAddresses(ctx)
	tries := 0
	a := prefix.Addr()
	for i := 0; i < band; i++ {
		a = a.Next()
		if !prefix.Contains(a) {
			break
		}
		if a == avoid || taken[a] {
			continue
		}
		if !listed {
			// Without the IPAddress API, ask the allocator about a few candidates.
			if tries++; tries > 8 {
				break
			}
			if r, _ := c.dryRunNamed(ctx, c.Config.Service, a); r != dryRunFree {
				continue
			}
		}
		return fmt.Sprintf("choose a free address in %s; the lower end of the range is kept for fixed ClusterIPs, and %s is free (--set service.clusterIP=%s)", prefix, a, a)
	}
	return fmt.Sprintf("choose a free address in %s, preferably among its first %d, which Kubernetes keeps for fixed ClusterIPs", prefix, band)
}

func (c *Checker) takenAddresses(ctx context.Context) (map[netip.Addr]bool, bool) {
	taken := map[netip.Addr]bool{}
	opts := metav1.ListOptions{Limit: listPage}
	for {
		list, err := c.Client.NetworkingV1().IPAddresses().List(ctx, opts)
		if err != nil {
			return nil, false
		}
		for _, a := range list.Items {
			if ip, err := netip.ParseAddr(a.Name); err == nil {
				taken[ip.Unmap()] = true
			}
		}
		if list.Continue == "" {
			return taken, true
		}
		opts.Continue = list.Continue
	}
}

// pickPrefix prefers the range holding ip, then one of its family, then any.
func pickPrefix(cidrs []netip.Prefix, ip netip.Addr) (netip.Prefix, bool) {
	for _, p := range cidrs {
		if p.Contains(ip) {
			return p, true
		}
	}
	for _, p := range cidrs {
		if p.Addr().Is4() == ip.Is4() {
			return p, true
		}
	}
	if len(cidrs) > 0 {
		return cidrs[0], true
	}
	return netip.Prefix{}, false
}

// staticBand is the size of the range's lower band, without the network address.
func staticBand(p netip.Prefix) int {
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits >= 12 {
		return 256
	}
	size := new(big.Int).Lsh(big.NewInt(1), uint(hostBits)).Int64()
	band := max(16, size/16)
	return int(min(band, 256, size-2))
}

func containsAddr(cidrs []netip.Prefix, ip netip.Addr) bool {
	for _, p := range cidrs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func joinPrefixes(cidrs []netip.Prefix) string {
	s := make([]string, 0, len(cidrs))
	for _, p := range cidrs {
		s = append(s, p.String())
	}
	return english.List(s)
}
