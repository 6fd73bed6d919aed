// Package credhelper reads the parent registry's credentials from a mounted Secret and answers the Docker
// credential-helper protocol with them.
//
// Distribution v3's `proxy.exec.command` runs the helper as `<command> get` (exec, no shell), with the
// registry's own environment, the parent's host[:port] on stdin (no scheme, no newline) and the helper's
// stderr joined to the registry's; it reads {"ServerURL":…,"Username":…,"Secret":…} from stdout.
package credhelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/connected-registry/connected-registry/internal/connstring"
)

// Where the credentials come from.
const (
	// EnvDir names the directory holding the credentials.
	EnvDir = "CONNECTED_REGISTRY_PARENT_CREDENTIALS"
	// DefaultDir is where the chart mounts the credentials.
	DefaultDir = "/etc/connected-registry/parent"
	// FileConnectionString holds a connection string; its sync token is used. It wins over the other two.
	FileConnectionString = "connectionString"
	// FileUsername and FilePassword hold the credentials directly (a Secret given as
	// registry.parent.credentialsSecret).
	FileUsername = "username"
	FilePassword = "password"
)

// maxFileSize caps what is read from each file: a credential is a few hundred bytes.
const maxFileSize = 16 << 10

// Errors users may see in the registry's log.
var (
	ErrNoDirectory   = errors.New("parent credentials directory does not exist")
	ErrNoCredentials = errors.New("parent credentials directory holds no credentials")
	ErrIncomplete    = errors.New("parent credentials are incomplete")
	ErrEmptyFile     = errors.New("parent credentials file is empty")
	ErrFileTooLarge  = errors.New("parent credentials file is too large")
)

// Credentials are the parent registry's username and password.
type Credentials struct {
	Username string
	Secret   string
	// Source names the file(s) they were read from, for messages.
	Source string
}

// String keeps the secret out of logs.
func (c Credentials) String() string {
	return fmt.Sprintf("username %q from %s", c.Username, c.Source)
}

// GoString keeps the secret out of %#v.
func (c Credentials) GoString() string { return "credhelper." + c.String() }

// Load reads the credentials from dir: the sync token of the connection string in dir/connectionString if that
// file exists, otherwise dir/username and dir/password. A single trailing newline is removed from each file.
func Load(dir string) (Credentials, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return Credentials{}, fmt.Errorf("%w: %s; mount the connection-string Secret or the Secret named by registry.parent.credentialsSecret there, or set %s to the directory that holds it",
			ErrNoDirectory, dir, EnvDir)
	}
	csPath := filepath.Join(dir, FileConnectionString)
	raw, err := readFile(csPath)
	switch {
	case err == nil:
		cs, err := connstring.Parse(raw)
		if err != nil {
			return Credentials{}, fmt.Errorf("reading %s: %w", csPath, err)
		}
		return Credentials{Username: cs.SyncTokenName, Secret: cs.SyncTokenPassword, Source: csPath}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return Credentials{}, err
	}

	userPath, passPath := filepath.Join(dir, FileUsername), filepath.Join(dir, FilePassword)
	user, userErr := readFile(userPath)
	pass, passErr := readFile(passPath)
	userMissing, passMissing := errors.Is(userErr, fs.ErrNotExist), errors.Is(passErr, fs.ErrNotExist)
	switch {
	case userMissing && passMissing:
		return Credentials{}, fmt.Errorf("%w: %s has neither %s nor %s and %s; mount a Secret with those keys there",
			ErrNoCredentials, dir, FileConnectionString, FileUsername, FilePassword)
	case userMissing:
		return Credentials{}, fmt.Errorf("%w: %s has %s but no %s; add the %s key to the Secret", ErrIncomplete, dir, FilePassword, FileUsername, FileUsername)
	case passMissing:
		return Credentials{}, fmt.Errorf("%w: %s has %s but no %s; add the %s key to the Secret", ErrIncomplete, dir, FileUsername, FilePassword, FilePassword)
	case userErr != nil:
		return Credentials{}, userErr
	case passErr != nil:
		return Credentials{}, passErr
	}
	return Credentials{Username: user, Secret: pass, Source: userPath + " and " + passPath}, nil
}

// readFile reads a credential file, removes one trailing newline and refuses empty or oversized content.
func readFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("reading parent credentials: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return "", fmt.Errorf("reading parent credentials: %w", err)
	}
	if len(data) > maxFileSize {
		return "", fmt.Errorf("%w: %s is larger than %d KiB, which no credential is; check what the Secret holds", ErrFileTooLarge, path, maxFileSize>>10)
	}
	s := string(data)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", fmt.Errorf("%w: %s; put the value in the Secret", ErrEmptyFile, path)
	}
	return s, nil
}

// Response is the answer of `get` in the Docker credential-helper protocol.
type Response struct {
	ServerURL string
	Username  string
	Secret    string
}

// Get answers `get`: it reads the server URL from in (Distribution writes the parent's host[:port]) and
// writes the credentials from dir as JSON to out. It answers for any server, because the registry only
// asks for its parent (and for the token realm the parent names, which may be another host).
func Get(dir string, in io.Reader, out io.Writer) error {
	server, err := io.ReadAll(io.LimitReader(in, maxFileSize))
	if err != nil {
		return fmt.Errorf("reading the server URL from stdin: %w", err)
	}
	creds, err := Load(dir)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(Response{
		ServerURL: strings.TrimSpace(string(server)),
		Username:  creds.Username,
		Secret:    creds.Secret,
	})
}
