package acrparent

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// sas signs and checks storage URLs as an Azure shared access signature does, in spirit: an HMAC-SHA256 over
// the path and the expiry, with a key only the parent knows, in the query (?se=<unix>&sig=<hex>).
type sas struct {
	key      []byte
	lifetime time.Duration
	now      func() time.Time
}

func newSAS(lifetime time.Duration) (*sas, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &sas{key: key, lifetime: lifetime, now: time.Now}, nil
}

func (s *sas) mac(path string, expiry int64) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(path + "\n" + strconv.FormatInt(expiry, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// sign adds se and sig for u's path, expiring at expiry, to u's query.
func (s *sas) sign(u *url.URL, expiry time.Time) {
	q := u.Query()
	se := expiry.Unix()
	q.Set("se", strconv.FormatInt(se, 10))
	q.Set("sig", s.mac(u.Path, se))
	u.RawQuery = q.Encode()
}

// Reasons the storage host refuses a URL.
var (
	errUnsigned      = errors.New("the URL carries no signature (se and sig)")
	errBadSignature  = errors.New("the signature does not match the path and expiry")
	errExpiredURL    = errors.New("the signed URL has expired")
	errAuthorization = errors.New("the storage host takes no Authorization header: the client sent credentials to another host")
)

// verify checks the signature of the path and query of u, then its expiry.
func (s *sas) verify(u *url.URL) error {
	q := u.Query()
	seText, sig := q.Get("se"), q.Get("sig")
	if seText == "" || sig == "" {
		return errUnsigned
	}
	se, err := strconv.ParseInt(seText, 10, 64)
	if err != nil {
		return errBadSignature
	}
	if !hmac.Equal([]byte(sig), []byte(s.mac(u.Path, se))) {
		return errBadSignature
	}
	if s.now().Unix() > se {
		return errExpiredURL
	}
	return nil
}

// blobPath is the path of a blob's data in Distribution's storage layout, which the redirect middleware puts
// after the storage base URL.
var blobPath = regexp.MustCompile(`^/docker/registry/v2/blobs/sha256/[0-9a-f]{2}/([0-9a-f]{64})/data$`)

// storageHost serves blob data from the Distribution process's storage directory to holders of a signed URL.
type storageHost struct {
	root string // Distribution's storage.filesystem.rootdirectory
	sas  *sas
	log  *recorder
}

func (h *storageHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cw := &countingWriter{ResponseWriter: w}
	rec := StorageRequest{Time: time.Now(), Method: r.Method, Path: r.URL.Path,
		Authorization: r.Header.Get("Authorization") != "", Range: r.Header.Get("Range")}
	defer func() {
		rec.Status, rec.Bytes = cw.status(), cw.n
		h.log.storage(rec)
	}()
	if m := blobPath.FindStringSubmatch(r.URL.Path); m != nil {
		rec.Digest = "sha256:" + m[1]
	}
	refuse := func(status int, err error) {
		rec.Refused = err.Error()
		http.Error(cw, err.Error(), status)
	}
	if rec.Authorization {
		refuse(http.StatusBadRequest, errAuthorization)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		refuse(http.StatusMethodNotAllowed, errors.New("the storage host serves GET and HEAD only"))
		return
	}
	if err := h.sas.verify(r.URL); err != nil {
		refuse(http.StatusForbidden, err)
		return
	}
	if rec.Digest == "" {
		refuse(http.StatusNotFound, errors.New("not a blob's path"))
		return
	}
	f, err := os.Open(filepath.Join(h.root, filepath.FromSlash(r.URL.Path)))
	if err != nil {
		refuse(http.StatusNotFound, errors.New("no such blob"))
		return
	}
	defer f.Close()
	cw.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(cw, r, "", time.Time{}, f)
}

// countingWriter counts the body bytes written and remembers the status.
type countingWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 { // 1xx are interim
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController (the reverse proxy's flushes) reach the connection.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
