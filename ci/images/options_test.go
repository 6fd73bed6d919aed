package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"flag"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/imagebuild"
)

// env returns a getenv over a map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func completeBuild(t *testing.T, args []string, vars map[string]string) (*BuildOptions, error) {
	t.Helper()
	var o BuildOptions
	fs := newFlagSet("build", io.Discard)
	require.NoError(t, o.BindFlags(fs, env(vars)))
	require.NoError(t, fs.Parse(args))
	return &o, o.Complete()
}

func TestBuildOptions(t *testing.T) {
	t.Parallel()
	t.Run("the defaults build every image for amd64 and arm64 into _out/images of the repository", func(t *testing.T) {
		t.Parallel()
		o, err := completeBuild(t, nil, nil)
		require.NoError(t, err)
		root, err := imagebuild.FindRepoRoot(".")
		require.NoError(t, err)
		require.Equal(t, filepath.Join(root, "_out", "images"), o.Out)
		var names []string
		for _, img := range o.images {
			names = append(names, img.Name)
		}
		require.Equal(t, []string{"connected-registry", "registry", "hello"}, names)
		require.Len(t, o.platforms, 2)
		appVersion, err := imagebuild.ChartAppVersion(root)
		require.NoError(t, err)
		require.Equal(t, []string{imagebuild.Repository + ":" + appVersion}, o.images[0].Refs)
		require.Equal(t, []string{"ghcr.io/connected-registry/distribution:v3.1.2", "docker.io/library/registry:3"}, o.images[1].Refs)
		require.True(t, o.created.Equal(imagebuild.Epoch))
	})
	t.Run("environment twins set the options and flags override them", func(t *testing.T) {
		t.Parallel()
		o, err := completeBuild(t, []string{"-version", "9.9.9"}, map[string]string{
			"IMAGES_ONLY": "connected-registry", "IMAGES_PLATFORMS": "linux/arm64", "IMAGES_VERSION": "1.0.0", "SOURCE_DATE_EPOCH": "86400",
		})
		require.NoError(t, err)
		require.Len(t, o.images, 1)
		require.Equal(t, []string{imagebuild.Repository + ":9.9.9"}, o.images[0].Refs)
		require.Equal(t, "linux/arm64", o.platforms[0].String())
		require.Equal(t, int64(86400), o.created.Unix())
	})
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"an unknown image name should fail", []string{"-only", "connected-registry,pause"}, `unknown image "pause" in -only: the images are connected-registry, registry, hello`},
		{"an empty platform list should fail", []string{"-platforms", ","}, "flag -platforms is empty"},
		{"a negative parallelism should fail", []string{"-go-parallelism", "-1"}, "must not be negative"},
		{"a directory outside the repository should fail", []string{"-root", "/"}, "read the chart's appVersion"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := completeBuild(t, tc.args, nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestPushOptionsValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"a missing registry should fail", nil, "flag -registry is required"},
		{"a registry with a scheme should fail", []string{"-registry", "https://r.example:5443"}, "must be HOST[:PORT]"},
		{"a user without a password should fail", []string{"-registry", "r.example", "-username", "u"}, "give both -username and -password"},
		{"a CA with plain HTTP should fail", []string{"-registry", "r.example", "-ca", "ca.crt", "-insecure-http"}, "contradict"},
		{"a malformed rename should fail", []string{"-registry", "r.example", "-rename", "a"}, "is not FROM=TO"},
		{"an empty image directory should fail", []string{"-registry", "r.example", "-image-dir", "/nonexistent"}, "no *.tar in /nonexistent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var o PushOptions
			fs := newFlagSet("push", io.Discard)
			require.NoError(t, o.BindFlags(fs, env(nil)))
			err := fs.Parse(tc.args)
			if err == nil {
				err = o.Complete()
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestRunRejectsUnknownCommands(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.EqualError(t, run(context.Background(), []string{"load"}, env(nil), &out, &out),
		`unknown command "load": give build or push`)
	require.ErrorIs(t, run(context.Background(), []string{"help"}, env(nil), &out, &out), flag.ErrHelp)
}

// TestBuildThenPushOverTLS runs both commands as a user would: build the hello image, then seed a TLS
// registry (trusting its CA from a file, renaming the repository) and read the same digest back.
func TestBuildThenPushOverTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"build", "-only", "hello", "-out", dir}, env(nil), &out, &out), out.String())
	list, err := os.ReadFile(filepath.Join(dir, "images.txt"))
	require.NoError(t, err)
	fields := strings.Fields(string(list))
	require.Len(t, fields, 3, "images.txt: %s", list)
	require.Equal(t, imagebuild.HelloRef, fields[0])
	require.Equal(t, "hello.tar", fields[2])

	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644))
	host := strings.TrimPrefix(srv.URL, "https://")

	out.Reset()
	require.NoError(t, run(ctx, []string{"push", "-image-dir", dir, "-registry", host, "-ca", caFile,
		"-rename", "connected-registry/testdata=testdata"}, env(nil), &out, &out), out.String())
	require.Contains(t, out.String(), "pushed "+imagebuild.HelloRef+" as "+host+"/testdata/hello:v1@"+fields[1])

	pool, err := imagebuild.CertPoolFromFile(caFile)
	require.NoError(t, err)
	c := &imagebuild.RegistryClient{RootCAs: pool}
	ref, err := name.ParseReference(host + "/testdata/hello:v1")
	require.NoError(t, err)
	desc, err := remote.Head(ref, c.Options(ctx)...)
	require.NoError(t, err)
	require.Equal(t, fields[1], desc.Digest.String())
}

func TestPushRefsUnder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, under, ref string
		want             bool
	}{
		{"no prefix should push every reference", "", "docker.io/library/registry:3", true},
		{"a reference under the prefix should be pushed", "ghcr.io/connected-registry", "ghcr.io/connected-registry/distribution:v3.1.2", true},
		{"a trailing slash on the prefix should not matter", "ghcr.io/connected-registry/", "ghcr.io/connected-registry/distribution:v3.1.2", true},
		{"a reference of another registry should be left out", "ghcr.io/connected-registry", "docker.io/library/registry:3", false},
		{"a repository that only starts with the prefix should be left out", "ghcr.io/connected-registry", "ghcr.io/connected-registry-fork/x:1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &PushOptions{RefsUnder: tc.under}
			require.Equal(t, tc.want, o.keepRef(tc.ref))
		})
	}
}
