package acrparent

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// APIRequest is one request to the registry API, as the front passed it to Distribution and back.
type APIRequest struct {
	Time   time.Time
	Method string
	// Path is the URL path; Query its raw query.
	Path, Query string
	// Auth is the scheme of the Authorization header ("Bearer", "Basic"), or "" without one.
	Auth string
	// Status is Distribution's answer; Bytes the body bytes sent to the client.
	Status int
	Bytes  int64
	// Location is where a redirect sent the client (signed, for the storage host), or "".
	Location string
}

// TokenRequest is one request to the token endpoint.
type TokenRequest struct {
	Time   time.Time
	Method string
	// Account is the name given by Basic auth ("" without it); AccountParam the account query parameter.
	Account, AccountParam string
	Service               string
	// Scopes asked (each scope parameter split at spaces), and those granted ("repository:a/b:pull,push").
	Scopes, Granted []string
	Status          int
	// Error says why the request was refused.
	Error string
	// Expires is when Distribution starts refusing the token (for status 200).
	Expires time.Time
}

// StorageRequest is one request to the storage host.
type StorageRequest struct {
	Time   time.Time
	Method string
	Path   string
	// Digest is the blob's digest when Path is a blob's, else "".
	Digest string
	// Range is the request's Range header.
	Range string
	// Authorization says whether the request carried an Authorization header (it must never).
	Authorization bool
	Status        int
	Bytes         int64
	// Refused says why the storage host refused the request, or "".
	Refused string
}

// Log is what the parent has recorded, oldest first.
type Log struct {
	API     []APIRequest
	Token   []TokenRequest
	Storage []StorageRequest
}

// Since returns what was recorded after mark (an earlier Log of the same parent).
func (l Log) Since(mark Log) Log {
	return Log{API: l.API[len(mark.API):], Token: l.Token[len(mark.Token):], Storage: l.Storage[len(mark.Storage):]}
}

// BlobFetches counts, by digest, the GETs the storage host answered with blob bytes (200 or 206).
func (l Log) BlobFetches() map[string]int {
	out := map[string]int{}
	for _, s := range l.Storage {
		if s.Method == http.MethodGet && s.Digest != "" && (s.Status == http.StatusOK || s.Status == http.StatusPartialContent) {
			out[s.Digest]++
		}
	}
	return out
}

// BlobGets counts the blob downloads the storage host served (GETs answered 200 or 206).
func (l Log) BlobGets() int {
	n := 0
	for _, c := range l.BlobFetches() {
		n += c
	}
	return n
}

// BlobBytes sums the body bytes the storage host sent.
func (l Log) BlobBytes() int64 {
	var n int64
	for _, s := range l.Storage {
		n += s.Bytes
	}
	return n
}

// StorageAuthorizations counts the requests to the storage host that carried an Authorization header.
func (l Log) StorageAuthorizations() int {
	n := 0
	for _, s := range l.Storage {
		if s.Authorization {
			n++
		}
	}
	return n
}

// APIAuth counts the registry API requests by Authorization scheme ("" for none).
func (l Log) APIAuth() map[string]int {
	out := map[string]int{}
	for _, a := range l.API {
		out[a.Auth]++
	}
	return out
}

// String prints the log one line a request, for test failures.
func (l Log) String() string {
	var b strings.Builder
	type line struct {
		t time.Time
		s string
	}
	var lines []line
	for _, a := range l.API {
		s := fmt.Sprintf("api     %s %s auth=%q -> %d, %d bytes", a.Method, a.Path, a.Auth, a.Status, a.Bytes)
		if a.Location != "" {
			s += ", location " + a.Location
		}
		lines = append(lines, line{a.Time, s})
	}
	for _, t := range l.Token {
		s := fmt.Sprintf("token   %s account=%q service=%q scopes=%q granted=%q -> %d", t.Method, t.Account, t.Service, t.Scopes, t.Granted, t.Status)
		if t.Error != "" {
			s += " (" + t.Error + ")"
		}
		lines = append(lines, line{t.Time, s})
	}
	for _, st := range l.Storage {
		s := fmt.Sprintf("storage %s %s authorization=%t -> %d, %d bytes", st.Method, st.Path, st.Authorization, st.Status, st.Bytes)
		if st.Refused != "" {
			s += " (" + st.Refused + ")"
		}
		lines = append(lines, line{st.Time, s})
	}
	slices.SortStableFunc(lines, func(a, b line) int { return a.t.Compare(b.t) })
	for _, ln := range lines {
		b.WriteString(ln.t.Format("15:04:05.000") + " " + ln.s + "\n")
	}
	return b.String()
}

// recorder collects the log.
type recorder struct {
	mu  sync.Mutex
	log Log
}

func (r *recorder) api(a APIRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.API = append(r.log.API, a)
}

func (r *recorder) token(t TokenRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Token = append(r.log.Token, t)
}

func (r *recorder) storage(s StorageRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Storage = append(r.log.Storage, s)
}

// snapshot copies the log.
func (r *recorder) snapshot() Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Log{API: slices.Clone(r.log.API), Token: slices.Clone(r.log.Token), Storage: slices.Clone(r.log.Storage)}
}
