package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrNotUp is returned by Status when some component is not running.
var ErrNotUp = errors.New("the cluster is not up")

// healthy returns nil when every component runs, the node is Ready and the
// kubernetes Service answers through its ClusterIP.
func (o *Options) healthy(ctx context.Context) error {
	var down []string
	for _, c := range o.components() {
		if _, ok := o.running(c.name); !ok {
			down = append(down, c.name)
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("%w: %s not running", ErrNotUp, strings.Join(down, ", "))
	}
	client, httpc, err := o.clients()
	if err != nil {
		return err
	}
	if err := o.nodeReady(ctx, client, time.Time{})(); err != nil {
		return err
	}
	return httpOK(ctx, httpc, fmt.Sprintf("https://%s:443/readyz", o.firstSvcIP))()
}

// Status writes one line per component (PID or "stopped") and the health of
// the cluster; it returns an error wrapping ErrNotUp when it is not healthy.
func (o *Options) Status(ctx context.Context, w io.Writer) error {
	for _, c := range o.components() {
		if id, ok := o.running(c.name); ok {
			fmt.Fprintf(w, "%-24s running  pid %-7d log %s\n", c.name, id.pid, o.LogFile(c.name))
		} else {
			fmt.Fprintf(w, "%-24s stopped\n", c.name)
		}
	}
	if err := o.healthy(ctx); err != nil {
		fmt.Fprintf(w, "cluster: not healthy: %v\n", err)
		if !errors.Is(err, ErrNotUp) {
			err = fmt.Errorf("%w: %w", ErrNotUp, err)
		}
		return err
	}
	if err := o.ContainmentInPlace(ctx); err != nil {
		fmt.Fprintf(w, "cluster: containment: %v\n", err)
		return fmt.Errorf("%w: %w", ErrNotUp, err)
	}
	fmt.Fprintf(w, "cluster: healthy, node %s Ready, API https://127.0.0.1:%d (advertised %s), KUBECONFIG=%s\n",
		o.NodeName, APIServerPort, o.bridgeIP, o.Kubeconfig())
	return nil
}

// Env writes the shell lines that point kubectl at the cluster.
func (o *Options) Env(w io.Writer) {
	fmt.Fprintf(w, "export KUBECONFIG=%s\n", o.Kubeconfig())
	fmt.Fprintf(w, "export PATH=%s:$PATH\n", o.BinDir())
}
