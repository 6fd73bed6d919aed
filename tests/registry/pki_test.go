package registry_test

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// testCA is a CA made for one test run; nothing else trusts it.
type testCA struct{ *testenv.CA }

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca, err := testenv.NewCA("connected-registry test CA")
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca}
}

// issue makes a serving certificate for 127.0.0.1 plus the given SANs, returning PEM certificate and key.
func (ca *testCA) issue(t *testing.T, cn string, ips []net.IP, dnsNames []string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(cn, append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...), dnsNames)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// transport trusts only the test CA.
func (ca *testCA) transport() *http.Transport { return ca.Transport() }

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}
