package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"

	"github.com/connected-registry/connected-registry/internal/cli"
	"github.com/connected-registry/connected-registry/postrender"
)

func TestParsePatch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		want     postrender.Patch
		err      string
	}{
		{name: "a file alone is an untargeted patch", in: "p.yaml", want: postrender.Patch{Path: "p.yaml"}},
		{name: "an @ without key=value is part of the file name", in: "dir@2/p.yaml", want: postrender.Patch{Path: "dir@2/p.yaml"}},
		{name: "a target names kind and name", in: "p.json@kind=Deployment,name=cr-connected-registry",
			want: postrender.Patch{Path: "p.json", Target: &types.Selector{ResId: resID("", "", "Deployment", "cr-connected-registry", "")}}},
		{name: "a label selector takes the rest, commas included", in: "p.json@kind=Deployment,labelSelector=a=b,c in (d,e)",
			want: postrender.Patch{Path: "p.json", Target: &types.Selector{ResId: resID("", "", "Deployment", "", ""), LabelSelector: "a=b,c in (d,e)"}}},
		{name: "an unknown key should fail naming the keys", in: "p.json@kidn=Deployment",
			err: `patch target "kidn=Deployment" of p.json: unknown key "kidn" (group, version, kind, name, namespace, labelSelector, annotationSelector)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parsePatch(tc.in)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func resID(group, version, kind, name, namespace string) resid.ResId {
	return resid.ResId{Gvk: resid.Gvk{Group: group, Version: version, Kind: kind}, Name: name, Namespace: namespace}
}

const service = `apiVersion: v1
kind: Service
metadata:
  name: cr-connected-registry
  namespace: connected-registry
`

// TestRun: flags and their environment twins, and errors written as a manifest for Helm 4.
func TestRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	patch := filepath.Join(dir, "annotate.json")
	require.NoError(t, os.WriteFile(patch, []byte(`[{"op": "add", "path": "/metadata/annotations", "value": {"site": "berlin"}}]`), 0o644))

	var out, errOut bytes.Buffer
	err := run(context.Background(), nil, cli.MapEnv(map[string]string{"CR_POSTRENDER_PATCHES": patch + "@kind=Service"}),
		strings.NewReader(service), &out, &errOut)
	require.NoError(t, err, errOut.String())
	require.Contains(t, out.String(), "site: berlin")

	out.Reset()
	err = run(context.Background(), []string{"--errors-as-manifest", "--patch", patch + "@kind=Secret"}, cli.MapEnv(nil),
		strings.NewReader(service), &out, &errOut)
	require.NoError(t, err, "with --errors-as-manifest the process succeeds and Helm 4 fails on the document")
	require.Equal(t, "--- |\n  connected-registry-postrender failed:\n  patch "+patch+" (target kind=Secret) matches no object of the chart's output\n", out.String())
	require.Contains(t, errOut.String(), "matches no object")

	err = run(context.Background(), []string{"--trust-distribution", "maybe"}, cli.MapEnv(nil), strings.NewReader(service), &out, &errOut)
	require.EqualError(t, err, `trust distribution "maybe" is not one of on, off, keep`)
}
