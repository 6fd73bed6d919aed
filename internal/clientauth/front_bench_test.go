package clientauth

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
)

// BenchmarkFront measures what the front costs a blob: a 64 MiB GET from a TLS registry directly, and through
// the front (TLS in, TLS to the registry on loopback), as a client pulling through the Service does.
func BenchmarkFront(b *testing.B) {
	blob := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB
	registry := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		_, _ = w.Write(blob)
	}))
	b.Cleanup(registry.Close)
	u, _ := url.Parse(registry.URL)
	upstream := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 64} //nolint:gosec // test loopback
	front := httptest.NewTLSServer(Front(http.NotFoundHandler(), u, upstream))
	b.Cleanup(front.Close)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test loopback
	for _, tc := range []struct{ name, url string }{{"direct", registry.URL}, {"front", front.URL}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(blob)))
			for b.Loop() {
				resp, err := client.Get(tc.url + "/v2/a/blobs/sha256:x")
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != int64(len(blob)) {
					b.Fatalf("read %d bytes, want %d", n, len(blob))
				}
			}
		})
	}
}
