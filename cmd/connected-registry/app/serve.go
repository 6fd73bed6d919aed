package app

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// healthReadHeaderTimeout bounds how long a probe may take to send its request headers.
const healthReadHeaderTimeout = 5 * time.Second

// serveHealth serves h on addr (a --health-addr) in the background; stop closes the server. An empty addr
// serves nothing.
func serveHealth(addr string, h http.Handler) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--health-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: healthReadHeaderTimeout}
	go func() { _ = srv.Serve(ln) }()
	return func() { srv.Close() }, nil
}
