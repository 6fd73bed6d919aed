package clientauth

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CertFiles serves the registry's certificate to the issuer's TLS listener from the files the tls-reloader
// writes, reading them again when they change, so the realm always shows the certificate the registry shows.
type CertFiles struct {
	Cert, Key string

	mu      sync.Mutex
	modTime time.Time
	cert    *tls.Certificate
}

// GetCertificate is tls.Config.GetCertificate.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var latest time.Time
	for _, f := range []string{c.Cert, c.Key} {
		st, err := os.Stat(f)
		if err != nil {
			if c.cert != nil {
				return c.cert, nil
			}
			return nil, fmt.Errorf("reading the serving certificate: %w", err)
		}
		if st.ModTime().After(latest) {
			latest = st.ModTime()
		}
	}
	if c.cert != nil && !latest.After(c.modTime) {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil // a pair caught between two writes: keep the one that worked
		}
		return nil, fmt.Errorf("reading the serving certificate: %w", err)
	}
	c.cert, c.modTime = &cert, latest
	return c.cert, nil
}

// WriteFileAtomic writes data to path through a temporary file in the same directory, so a reader never sees
// half a file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
