package main

import (
	"context"
	"net"
	"path/filepath"
	"time"

	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// runUplink pulls the large image straight from the parent and cold through a connected registry (the chart's
// defaults), both through a link of UplinkRate bytes per second to the parent: the thin uplink of a remote site,
// which the loopback paths of runSingle leave out. The paths take turns within each run.
func (b *bench) runUplink(ctx context.Context) error {
	link, via, err := b.startUplink()
	if err != nil {
		return err
	}
	defer link.Close()

	v := b.o.Variants[len(b.o.Variants)-1]
	img := b.single
	direct := &series{image: img, path: "direct, uplink"}
	cold := &series{image: img, path: "cold, uplink", variant: v.name}
	b.res.uplink = append(b.res.uplink, direct, cold)
	for run := 0; run < b.o.Runs; run++ {
		b.e.logf("uplink of %d B/s: run %d of %d", b.o.UplinkRate, run+1, b.o.Runs)
		direct.add(b.pullOnce(ctx, via, true, img, img.byTag(), b.o.PullTimeout))
		cr, err := b.e.startConnectedVia(ctx, v, filepath.Join(b.o.Dir, "cr"), via)
		if err != nil {
			return err
		}
		b.e.parent.settle(100*time.Millisecond, 2*time.Second)
		_, mark := b.e.parent.traffic(0)
		cold.add(b.pullOnce(ctx, cr.host, false, img, img.byTag(), b.o.PullTimeout))
		if err := cr.waitStored(img, time.Minute); err != nil {
			cold.errs = append(cold.errs, err)
		}
		b.e.parent.settle(100*time.Millisecond, 2*time.Second)
		t, _ := b.e.parent.traffic(mark)
		cold.parent = append(cold.parent, t.sent(b.sizes))
		cr.remove()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// startUplink starts a link of UplinkRate bytes per second to the parent and returns it with the host:port that
// reaches the parent through it, by the parent's host name, which its certificate names.
func (b *bench) startUplink() (link *testenv.Link, via string, err error) {
	_, port, err := net.SplitHostPort(b.e.parentHost)
	if err != nil {
		return nil, "", err
	}
	link, err = testenv.StartLink(net.JoinHostPort(b.e.parentIP, "0"), net.JoinHostPort(b.e.parentIP, port), b.o.UplinkRate)
	if err != nil {
		return nil, "", err
	}
	_, linkPort, _ := net.SplitHostPort(link.Addr)
	name, _, _ := net.SplitHostPort(b.e.parentHost)
	return link, net.JoinHostPort(name, linkPort), nil
}
