package credhelper_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/connstring"
	"github.com/connected-registry/connected-registry/internal/credhelper"
)

const (
	syncPassword = "s3cr3t+Sync/Token=="
	connString   = "ConnectedRegistryName=myconnectedregistry;SyncTokenName=myconnectedregistry-sync-token;SyncTokenPassword=" +
		syncPassword + ";ParentGatewayEndpoint=myregistry.eastus.data.azurecr.io;ParentEndpointProtocol=https"
)

// writeDir makes a credentials directory holding files (name → content).
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o400))
	}
	return dir
}

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		files    map[string]string
		noDir    bool
		wantUser string
		wantPass string
		is       error
		wantErr  string // %s is replaced by the directory
	}{
		{
			name:     "a connection string should yield its sync token",
			files:    map[string]string{"connectionString": connString},
			wantUser: "myconnectedregistry-sync-token",
			wantPass: syncPassword,
		},
		{
			name:     "a connection string ending with one newline should be accepted",
			files:    map[string]string{"connectionString": connString + "\n"},
			wantUser: "myconnectedregistry-sync-token",
			wantPass: syncPassword,
		},
		{
			name:     "a connection string ending with a Windows newline should be accepted",
			files:    map[string]string{"connectionString": connString + "\r\n"},
			wantUser: "myconnectedregistry-sync-token",
			wantPass: syncPassword,
		},
		{
			name:    "a connection string ending with two newlines should fail with the parser's message",
			files:   map[string]string{"connectionString": connString + "\n\n"},
			is:      connstring.ErrWhitespace,
			wantErr: "reading %s/connectionString: connection string ends with a newline (common when copied); remove it",
		},
		{
			name:    "a connection string with typographic quotes should fail with the parser's message",
			files:   map[string]string{"connectionString": "“" + connString + "”"},
			is:      connstring.ErrTypographicQuotes,
			wantErr: "reading %s/connectionString: connection string contains typographic quotes copied from a document; use plain ASCII quotes or none",
		},
		{
			name:     "a connection string should win over username and password files",
			files:    map[string]string{"connectionString": connString, "username": "other", "password": "other-password"},
			wantUser: "myconnectedregistry-sync-token",
			wantPass: syncPassword,
		},
		{
			name:     "username and password files should be used as they are",
			files:    map[string]string{"username": "puller", "password": "p@ss word "},
			wantUser: "puller",
			wantPass: "p@ss word ",
		},
		{
			name:     "username and password files should lose one trailing newline",
			files:    map[string]string{"username": "puller\n", "password": "secret\n"},
			wantUser: "puller",
			wantPass: "secret",
		},
		{
			name:     "a password ending with two newlines should keep one",
			files:    map[string]string{"username": "puller", "password": "secret\n\n"},
			wantUser: "puller",
			wantPass: "secret\n",
		},
		{
			name:    "a username without a password should fail naming the missing key",
			files:   map[string]string{"username": "puller"},
			is:      credhelper.ErrIncomplete,
			wantErr: "parent credentials are incomplete: %s has username but no password; add the password key to the Secret",
		},
		{
			name:    "a password without a username should fail naming the missing key",
			files:   map[string]string{"password": "secret"},
			is:      credhelper.ErrIncomplete,
			wantErr: "parent credentials are incomplete: %s has password but no username; add the username key to the Secret",
		},
		{
			name:    "an empty directory should fail naming the expected files",
			files:   map[string]string{"ca.crt": "x"},
			is:      credhelper.ErrNoCredentials,
			wantErr: "parent credentials directory holds no credentials: %s has neither connectionString nor username and password; mount a Secret with those keys there",
		},
		{
			name:    "a missing directory should fail naming the environment variable",
			noDir:   true,
			is:      credhelper.ErrNoDirectory,
			wantErr: "parent credentials directory does not exist: %s; mount the connection-string Secret or the Secret named by registry.parent.credentialsSecret there, or set CONNECTED_REGISTRY_PARENT_CREDENTIALS to the directory that holds it",
		},
		{
			name:    "an empty password file should fail",
			files:   map[string]string{"username": "puller", "password": "\n"},
			is:      credhelper.ErrEmptyFile,
			wantErr: "parent credentials file is empty: %s/password; put the value in the Secret",
		},
		{
			name:    "an oversized file should fail",
			files:   map[string]string{"username": "puller", "password": strings.Repeat("x", 20000)},
			is:      credhelper.ErrFileTooLarge,
			wantErr: "parent credentials file is too large: %s/password is larger than 16 KiB, which no credential is; check what the Secret holds",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, tt.files)
			if tt.noDir {
				dir = filepath.Join(dir, "absent")
			}
			got, err := credhelper.Load(dir)
			if tt.wantErr != "" {
				require.EqualError(t, err, strings.ReplaceAll(tt.wantErr, "%s", dir))
				require.ErrorIs(t, err, tt.is)
				require.NotContains(t, err.Error(), syncPassword)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantUser, got.Username)
			require.Equal(t, tt.wantPass, got.Secret)
			for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
				require.NotContains(t, fmt.Sprintf(format, got), tt.wantPass)
			}
		})
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		stdin string
		want  string
	}{
		{
			name:  "the parent's host and port as Distribution sends them should be echoed",
			stdin: "127.0.0.1:5443",
			want:  `{"ServerURL":"127.0.0.1:5443","Username":"myconnectedregistry-sync-token","Secret":"s3cr3t+Sync/Token=="}`,
		},
		{
			name:  "an unexpected server should still get the credentials",
			stdin: "auth.example.com\n",
			want:  `{"ServerURL":"auth.example.com","Username":"myconnectedregistry-sync-token","Secret":"s3cr3t+Sync/Token=="}`,
		},
		{
			name:  "an empty stdin should still get the credentials",
			stdin: "",
			want:  `{"ServerURL":"","Username":"myconnectedregistry-sync-token","Secret":"s3cr3t+Sync/Token=="}`,
		},
	}
	dir := writeDir(t, map[string]string{"connectionString": connString})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			require.NoError(t, credhelper.Get(dir, strings.NewReader(tt.stdin), &out))
			require.JSONEq(t, tt.want, out.String())
			var resp credhelper.Response
			require.NoError(t, json.Unmarshal(out.Bytes(), &resp))
			require.Equal(t, syncPassword, resp.Secret)
		})
	}
}

func TestGetWritesNothingOnError(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := credhelper.Get(writeDir(t, map[string]string{"username": "puller"}), strings.NewReader("127.0.0.1:5443"), &out)
	require.ErrorIs(t, err, credhelper.ErrIncomplete)
	require.Empty(t, out.String())
}
