package parentgate

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Limits of the gate's server, which only the registry beside it reaches.
const (
	// readHeaderTimeout bounds reading a request's header.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds reading a whole request: the gate takes GET and HEAD only.
	readTimeout = 30 * time.Second
	// idleTimeout closes a keep-alive connection the registry leaves unused.
	idleTimeout = 2 * time.Minute
)

// ErrNotLoopback refuses a listen address off the pod's loopback: the gate forwards with the registry's
// credentials and must be reachable only from inside the pod.
var ErrNotLoopback = errors.New("the parent gate listens only on a loopback address (127.0.0.1 or ::1)")

// Listen listens on addr, which must be a loopback host:port, and accepts at most maxConns connections at once
// (0: no cap).
func Listen(addr string, maxConns int) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q is not host:port: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%w, not %q", ErrNotLoopback, addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if maxConns > 0 {
		l = netutil.LimitListener(l, maxConns)
	}
	return l, nil
}

// Server is an HTTP server for the gate, with timeouts for a request's header and body and for idle
// connections. Answers have no overall write limit, since a blob takes as long as it takes: the gate cuts a
// reader that stops for WriteTimeout.
func (g *Gate) Server() *http.Server {
	return &http.Server{
		Handler:           g,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
	}
}
