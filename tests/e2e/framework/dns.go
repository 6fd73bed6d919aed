package framework

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterDNS answers, on the cluster bridge, what a cluster's DNS (CoreDNS) answers for Services:
// <service>.<namespace>.svc[.cluster.local] is the ClusterIP, or for a headless Service the IPv4 addresses of its
// ready endpoints (all of them with publishNotReadyAddresses); any other name does not exist. The test cluster
// runs no DNS (pods resolve through loopback, so no name leaves the machine): a release whose pods look a
// Service up by name gets Values, which point the registry pod here.
type ClusterDNS struct {
	e   *Env
	udp net.PacketConn
	tcp net.Listener
	wg  sync.WaitGroup
}

// StartClusterDNS serves DNS on BridgeIP:53, over UDP and TCP. Stop it with Stop.
func (e *Env) StartClusterDNS() (*ClusterDNS, error) {
	addr := net.JoinHostPort(BridgeIP, "53")
	udp, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("the cluster DNS stand-in: %w", err)
	}
	tcp, err := net.Listen("tcp4", addr)
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("the cluster DNS stand-in: %w", err)
	}
	d := &ClusterDNS{e: e, udp: udp, tcp: tcp}
	d.wg.Go(d.serveUDP)
	d.wg.Go(d.serveTCP)
	return d, nil
}

// Resolver asks d, as the registry pods do.
func (d *ClusterDNS) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, network, net.JoinHostPort(BridgeIP, "53"))
	}}
}

// Stop stops serving and waits for the server's goroutines.
func (d *ClusterDNS) Stop() {
	d.udp.Close()
	d.tcp.Close()
	d.wg.Wait()
}

// Values are the chart values (flat keys) that make the registry pod of a release in ns resolve through d, with
// the search path of a pod in ns.
func (d *ClusterDNS) Values(ns string) map[string]any {
	return map[string]any{
		"registry.dnsPolicy": "None",
		"registry.dnsConfig": map[string]any{
			"nameservers": []any{BridgeIP},
			"searches":    []any{ns + ".svc.cluster.local", "svc.cluster.local", "cluster.local"},
		},
	}
}

func (d *ClusterDNS) serveUDP() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		if out, err := d.answer(buf[:n]); err == nil {
			_, _ = d.udp.WriteTo(out, from)
		}
	}
}

func (d *ClusterDNS) serveTCP() {
	for {
		c, err := d.tcp.Accept()
		if err != nil {
			return
		}
		d.wg.Go(func() {
			defer c.Close()
			for {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var size uint16
				if err := binary.Read(c, binary.BigEndian, &size); err != nil {
					return
				}
				q := make([]byte, size)
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				out, err := d.answer(q)
				if err != nil {
					return
				}
				if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(out)))); err != nil {
					return
				}
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		})
	}
}

// answer answers the one question of a query.
func (d *ClusterDNS) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	ips, rcode := d.resolve(q.Name.String())
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if q.Type == dnsmessage.TypeA {
		for _, ip := range ips {
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
			if err := b.AResource(rh, dnsmessage.AResource{A: ip.As4()}); err != nil {
				return nil, err
			}
		}
	}
	return b.Finish()
}

// resolve returns the IPv4 addresses of a Service's name, as CoreDNS's kubernetes plugin would.
func (d *ClusterDNS) resolve(name string) ([]netip.Addr, dnsmessage.RCode) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	name = strings.TrimSuffix(name, ".cluster.local")
	rest, ok := strings.CutSuffix(name, ".svc")
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 2 {
		return nil, dnsmessage.RCodeNameError
	}
	svcName, ns := parts[0], parts[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	svc, err := d.e.Client.CoreV1().Services(ns).Get(ctx, svcName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, dnsmessage.RCodeNameError
	}
	if err != nil {
		return nil, dnsmessage.RCodeServerFailure
	}
	if svc.Spec.ClusterIP != "None" {
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !ip.Is4() {
			return nil, dnsmessage.RCodeSuccess
		}
		return []netip.Addr{ip}, dnsmessage.RCodeSuccess
	}
	slices, err := d.e.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svcName})
	if err != nil {
		return nil, dnsmessage.RCodeServerFailure
	}
	var out []netip.Addr
	for _, s := range slices.Items {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ready := ep.Conditions.Ready; ready != nil && !*ready && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out = append(out, ip)
				}
			}
		}
	}
	return out, dnsmessage.RCodeSuccess
}
