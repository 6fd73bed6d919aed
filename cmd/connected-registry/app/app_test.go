package app_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
	"github.com/connected-registry/connected-registry/internal/credhelper"
)

const connString = "ConnectedRegistryName=cr;SyncTokenName=cr-sync-token;SyncTokenPassword=sync-password;" +
	"ParentGatewayEndpoint=127.0.0.1:5443;ParentEndpointProtocol=https"

func envMap(m map[string]string) app.LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

type result struct {
	out, errOut string
	err         error
}

func execute(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	err := app.Execute(context.Background(), args, app.Streams{In: strings.NewReader(stdin), Out: &out, Err: &errOut}, envMap(env))
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

func credentialsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o400))
	}
	return dir
}

func TestCredentialHelper(t *testing.T) {
	t.Parallel()
	csDir := credentialsDir(t, map[string]string{"connectionString": connString + "\n"})
	upDir := credentialsDir(t, map[string]string{"username": "puller\n", "password": "pull-password\n"})
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		stdin    string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{
			name:    "get under the helper name should answer from the connection string the environment points at",
			args:    []string{"/helpers/docker-credential-connected-registry", "get"},
			env:     map[string]string{"CONNECTED_REGISTRY_PARENT_CREDENTIALS": csDir},
			stdin:   "127.0.0.1:5443",
			wantOut: `{"ServerURL":"127.0.0.1:5443","Username":"cr-sync-token","Secret":"sync-password"}` + "\n",
		},
		{
			name:    "get under the helper name should answer from username and password files",
			args:    []string{"docker-credential-connected-registry", "get"},
			env:     map[string]string{"CONNECTED_REGISTRY_PARENT_CREDENTIALS": upDir},
			stdin:   "myregistry.azurecr.io",
			wantOut: `{"ServerURL":"myregistry.azurecr.io","Username":"puller","Secret":"pull-password"}` + "\n",
		},
		{
			name:    "the flag should win over the environment variable",
			args:    []string{"docker-credential-connected-registry", "--credentials-dir", upDir, "get"},
			env:     map[string]string{"CONNECTED_REGISTRY_PARENT_CREDENTIALS": csDir},
			stdin:   "x",
			wantOut: `{"ServerURL":"x","Username":"puller","Secret":"pull-password"}` + "\n",
		},
		{
			name:    "the credential-helper subcommand should answer like the helper name",
			args:    []string{"connected-registry", "credential-helper", "get"},
			env:     map[string]string{"CONNECTED_REGISTRY_PARENT_CREDENTIALS": csDir},
			stdin:   "127.0.0.1:5443",
			wantOut: `{"ServerURL":"127.0.0.1:5443","Username":"cr-sync-token","Secret":"sync-password"}` + "\n",
		},
		{
			name:     "get without credentials should fail and print nothing on stdout",
			args:     []string{"docker-credential-connected-registry", "get"},
			env:      map[string]string{"CONNECTED_REGISTRY_PARENT_CREDENTIALS": filepath.Join(csDir, "absent")},
			wantErr:  "parent credentials directory does not exist: " + filepath.Join(csDir, "absent") + "; mount the connection-string Secret or the Secret named by registry.parent.credentialsSecret there, or set CONNECTED_REGISTRY_PARENT_CREDENTIALS to the directory that holds it",
			wantCode: 1,
		},
		{
			name:     "store should be refused as not supported",
			args:     []string{"docker-credential-connected-registry", "store"},
			env:      map[string]string{"CONNECTED_REGISTRY_PARENT_CREDENTIALS": csDir},
			stdin:    `{"ServerURL":"x","Username":"u","Secret":"s"}`,
			wantErr:  "store is not supported: the parent credentials come from the Secret mounted at " + csDir + ", not from docker login",
			wantCode: 1,
		},
		{
			name:     "erase should be refused as not supported",
			args:     []string{"docker-credential-connected-registry", "erase"},
			wantErr:  "erase is not supported: the parent credentials come from the Secret mounted at /etc/connected-registry/parent, not from docker login",
			wantCode: 1,
		},
		{
			name:     "list should be refused as not supported",
			args:     []string{"docker-credential-connected-registry", "list"},
			wantErr:  "list is not supported: the parent credentials come from the Secret mounted at /etc/connected-registry/parent, not from docker login",
			wantCode: 1,
		},
		{
			name:     "an unknown action should be a usage error",
			args:     []string{"docker-credential-connected-registry", "fetch"},
			wantErr:  `unknown credential helper action "fetch"; the registry calls get`,
			wantCode: 2,
		},
		{
			name:     "no action should be a usage error",
			args:     []string{"docker-credential-connected-registry"},
			wantErr:  "give one action: get, store, erase, list or version (got 0 arguments)",
			wantCode: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := execute(t, tt.env, tt.stdin, tt.args...)
			require.Equal(t, tt.wantCode, app.ExitCode(r.err))
			if tt.wantErr != "" {
				require.EqualError(t, r.err, tt.wantErr)
				require.Empty(t, r.out)
				return
			}
			require.NoError(t, r.err)
			require.Equal(t, tt.wantOut, r.out)
		})
	}
}

func TestNotSupportedIsMatchable(t *testing.T) {
	t.Parallel()
	r := execute(t, nil, "", "docker-credential-x", "store")
	require.ErrorIs(t, r.err, credhelper.ErrNotSupported)
}

func TestInstallCredentialHelper(t *testing.T) {
	t.Parallel()

	t.Run("the report should name the helper, its size and its mode", func(t *testing.T) {
		t.Parallel()
		src := filepath.Join(t.TempDir(), "connected-registry")
		require.NoError(t, os.WriteFile(src, []byte("#!binary\x00payload"), 0o755))
		dest := filepath.Join(t.TempDir(), "docker-credential-connected-registry")
		o := &app.InstallCredentialHelperOptions{Dest: dest, Source: src}
		require.NoError(t, o.Complete())
		var out bytes.Buffer
		require.NoError(t, o.Run(context.Background(), &out))
		require.Equal(t, "installed the credential helper at "+dest+" (16 bytes, mode 0555)\n", out.String())
	})

	t.Run("without a source the running executable should be found", func(t *testing.T) {
		t.Parallel()
		o := &app.InstallCredentialHelperOptions{Dest: filepath.Join(t.TempDir(), "docker-credential-x")}
		require.NoError(t, o.Complete())
		exe, err := os.Executable()
		require.NoError(t, err)
		exe, err = filepath.EvalSymlinks(exe)
		require.NoError(t, err)
		require.Equal(t, exe, o.Source)
	})
}

func TestInstallCredentialHelperCommandLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{
			name:    "the destination should come from the environment twin of --dest",
			args:    []string{"connected-registry", "install-credential-helper"},
			env:     map[string]string{"CONNECTED_REGISTRY_HELPER_DEST": filepath.Join(dir, "env", "docker-credential-connected-registry")},
			wantOut: "installed the credential helper at " + filepath.Join(dir, "env", "docker-credential-connected-registry"),
		},
		{
			name:    "--dest should win over its environment twin",
			args:    []string{"connected-registry", "install-credential-helper", "--dest", filepath.Join(dir, "flag", "docker-credential-connected-registry")},
			env:     map[string]string{"CONNECTED_REGISTRY_HELPER_DEST": filepath.Join(dir, "env", "docker-credential-other")},
			wantOut: "installed the credential helper at " + filepath.Join(dir, "flag", "docker-credential-connected-registry"),
		},
		{
			name:     "a missing --dest should be a usage error",
			args:     []string{"connected-registry", "install-credential-helper"},
			wantErr:  "--dest is required: the path the registry's proxy.exec.command names, like /helpers/docker-credential-connected-registry",
			wantCode: 2,
		},
		{
			name:     "a destination not named docker-credential-* should be a usage error",
			args:     []string{"connected-registry", "install-credential-helper", "--dest", "/helpers/credential-helper"},
			wantErr:  `--dest "/helpers/credential-helper" must name a file starting with docker-credential-, or the copy will not act as a credential helper`,
			wantCode: 2,
		},
		{
			name:     "a stray argument should be a usage error",
			args:     []string{"connected-registry", "install-credential-helper", "--dest", "/helpers/docker-credential-x", "extra"},
			wantErr:  `connected-registry install-credential-helper takes no arguments, got ["extra"]`,
			wantCode: 2,
		},
		{
			name:     "an unknown flag should be a usage error",
			args:     []string{"connected-registry", "install-credential-helper", "--destination", "/x"},
			wantErr:  "connected-registry install-credential-helper: flag provided but not defined: -destination",
			wantCode: 2,
		},
		{
			name:     "an unknown command should be a usage error",
			args:     []string{"connected-registry", "preflite"},
			wantErr:  `unknown command "preflite"; run connected-registry --help for the commands`,
			wantCode: 2,
		},
		{
			name:     "no command should print the usage and be a usage error",
			args:     []string{"connected-registry"},
			wantOut:  "Usage: connected-registry <command> [flags]",
			wantErr:  "no command given; run connected-registry --help for the commands",
			wantCode: 2,
		},
		{
			name:    "--help should list the commands",
			args:    []string{"connected-registry", "--help"},
			wantOut: "  install-credential-helper   copy this binary to --dest, where the registry runs it as its Docker credential helper (and, through --link, as its liveness probe)\n",
			wantErr: "flag: help requested",
		},
		{
			name:    "a command's --help should name the environment twin of each flag",
			args:    []string{"connected-registry", "install-credential-helper", "--help"},
			wantOut: "(env CONNECTED_REGISTRY_HELPER_DEST)",
			wantErr: "flag: help requested",
		},
	}
	for _, d := range []string{"env", "flag"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := execute(t, tt.env, "", tt.args...)
			require.Equal(t, tt.wantCode, app.ExitCode(r.err))
			if tt.wantErr != "" {
				require.EqualError(t, r.err, tt.wantErr)
			} else {
				require.NoError(t, r.err)
			}
			require.Contains(t, r.out, tt.wantOut)
		})
	}
}
