package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Roles this program plays when it runs itself as a child process.
const (
	roleEnv    = "CR_BENCH_ROLE"
	roleRawTLS = "rawtls"
)

// runRole runs the child role named by the environment, if any, and reports whether it did.
func runRole() (bool, error) {
	switch os.Getenv(roleEnv) {
	case "":
		return false, nil
	case roleRawTLS:
		return true, serveRawTLS(os.Getenv("CR_BENCH_ROOT"), os.Getenv("CR_BENCH_ADDR"), os.Getenv("CR_BENCH_CERT"), os.Getenv("CR_BENCH_KEY"))
	default:
		return true, fmt.Errorf("unknown %s %q", roleEnv, os.Getenv(roleEnv))
	}
}

// serveRawTLS is the ceiling: Go's HTTPS server (HTTP/1.1 and HTTP/2, Go's default TLS settings, the same
// certificate type as the registries) serving the image's bytes from files with http.ServeContent, as
// Distribution's filesystem driver does, and nothing else: no storage driver, no proxy, no logging.
func serveRawTLS(root, addr, cert, key string) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clean := path.Clean(r.URL.Path)
		if clean == "/" || clean == "/v2" {
			w.WriteHeader(http.StatusOK)
			return
		}
		f, err := os.Open(filepath.Join(root, filepath.FromSlash(clean)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || fi.IsDir() {
			http.NotFound(w, r)
			return
		}
		if strings.Contains(clean, "/manifests/") {
			var head struct {
				MediaType string `json:"mediaType"`
			}
			if err := json.NewDecoder(f).Decode(&head); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if _, err := f.Seek(0, 0); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", head.MediaType)
		} else {
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		http.ServeContent(w, r, "", time.Time{}, f)
	})
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServeTLS(cert, key)
}

// silentParent accepts connections on addr and never answers: a parent behind a link that drops everything
// after the TCP handshake, or a hung parent.
type silentParent struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startSilentParent(addr string) (*silentParent, error) {
	var l net.Listener
	var err error
	// The parent that held the port may still be releasing it.
	for i := 0; i < 50; i++ {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	s := &silentParent{l: l, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	return s, nil
}

func (s *silentParent) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *silentParent) stop() {
	s.l.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}
