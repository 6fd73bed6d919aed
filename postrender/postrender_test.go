package postrender_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	helmpostrender "helm.sh/helm/v3/pkg/postrender"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"

	"github.com/connected-registry/connected-registry/postrender"
)

// A *Renderer is a Helm 3 post-renderer without importing Helm.
var _ helmpostrender.PostRenderer = (*postrender.Renderer)(nil)

const chartOutput = `---
# Source: connected-registry/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: cr-connected-registry
  namespace: connected-registry
  labels:
    app.kubernetes.io/name: connected-registry
    app.kubernetes.io/instance: cr
    app.kubernetes.io/component: registry
    app.kubernetes.io/part-of: connected-registry
spec:
  clusterIP: "10.96.0.50"
  ports:
    - name: https
      port: 443
---
# Source: connected-registry/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cr-connected-registry
  namespace: connected-registry
  labels:
    app.kubernetes.io/component: registry
    app.kubernetes.io/part-of: connected-registry
spec:
  template:
    spec:
      containers:
        - name: registry
          image: registry:3
      volumes:
        - name: tls
          secret:
            secretName: cr-connected-registry-tls
---
# Source: connected-registry/templates/trust/daemonset.yaml
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: cr-connected-registry-trust
  namespace: connected-registry
  labels:
    app.kubernetes.io/component: trust-agent
    app.kubernetes.io/part-of: connected-registry
spec:
  template:
    spec:
      containers:
        - name: agent
          image: ghcr.io/connected-registry/connected-registry:0.1.0
---
# Source: connected-registry/templates/trust/cleanup.yaml
apiVersion: batch/v1
kind: Job
metadata:
  name: cr-connected-registry-trust-cleanup
  namespace: connected-registry
  labels:
    app.kubernetes.io/component: trust-agent
  annotations:
    helm.sh/hook: post-delete
    postrenderer.helm.sh/postrender-filename: connected-registry/templates/trust/cleanup.yaml
spec:
  template:
    spec:
      containers:
        - name: cleanup
          image: ghcr.io/connected-registry/connected-registry:0.1.0
`

func memFS(t testing.TB, files map[string]string) filesys.FileSystem {
	t.Helper()
	fs := filesys.MakeFsInMemory()
	for p, c := range files {
		require.NoError(t, fs.WriteFile(p, []byte(c)))
	}
	return fs
}

func run(t testing.TB, o postrender.Options, in string) (string, error) {
	t.Helper()
	r, err := postrender.New(o)
	if err != nil {
		return "", err
	}
	out, err := r.Run(bytes.NewBufferString(in))
	if err != nil {
		return "", err
	}
	return out.String(), nil
}

func TestRun(t *testing.T) {
	t.Parallel()
	tolerationPatch := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: cr-connected-registry
  namespace: connected-registry
spec:
  template:
    spec:
      tolerations:
        - key: site
          operator: Exists
`
	cases := []struct {
		name     string
		files    map[string]string
		opts     postrender.Options
		contains []string
		absent   []string
		err      string
	}{
		{
			name:  "a kustomization directory listing the chart output adds its labels to every object",
			files: map[string]string{"/o/kustomization.yaml": "resources: [helm-output.yaml]\nlabels:\n- pairs: {site: berlin}\n"},
			opts:  postrender.Options{Dir: "/o"},
			contains: []string{"site: berlin", "kind: DaemonSet",
				"postrenderer.helm.sh/postrender-filename: connected-registry/templates/trust/cleanup.yaml"},
		},
		{
			name:     "a strategic-merge patch named on the command line patches the object it names",
			files:    map[string]string{"/p/tolerations.yaml": tolerationPatch},
			opts:     postrender.Options{Patches: []postrender.Patch{{Path: "/p/tolerations.yaml"}}},
			contains: []string{"key: site"},
		},
		{
			name:   "trust distribution off removes every object labelled trust-agent, hooks included",
			opts:   postrender.Options{Trust: postrender.TrustOff},
			absent: []string{"kind: DaemonSet", "trust-cleanup", "trust-agent"},
		},
		{
			name:  "a kustomization directory that does not list the chart output should fail",
			files: map[string]string{"/o/kustomization.yaml": "resources: [other.yaml]\n"},
			opts:  postrender.Options{Dir: "/o"},
			err:   "/o/kustomization.yaml: the kustomization does not list the chart's output helm-output.yaml in its resources",
		},
		{
			name:  "an untargeted patch for an object that does not exist should name the patch file and its target",
			files: map[string]string{"/p/typo.yaml": strings.Replace(tolerationPatch, "cr-connected-registry", "cr-connected-regsitry", 1)},
			opts:  postrender.Options{Patches: []postrender.Patch{{Path: "/p/typo.yaml"}}},
			err:   "patch /p/typo.yaml (target kind=Deployment,name=cr-connected-regsitry,namespace=connected-registry) matches no object of the chart's output",
		},
		{
			name:  "an untargeted patch without the chart's namespace should say which namespace to set",
			files: map[string]string{"/p/nons.yaml": strings.Replace(tolerationPatch, "  namespace: connected-registry\n", "", 1)},
			opts:  postrender.Options{Patches: []postrender.Patch{{Path: "/p/nons.yaml"}}},
			err: "patch /p/nons.yaml (target kind=Deployment,name=cr-connected-registry) matches no object of the chart's output: " +
				"the chart's Deployment cr-connected-registry is in namespace \"connected-registry\"; set metadata.namespace: connected-registry in the patch, or give it a target",
		},
		{
			name: "a targeted JSON patch that selects nothing should name the patch file and its target",
			files: map[string]string{
				"/o/kustomization.yaml": "resources: [helm-output.yaml]\npatches:\n- path: replicas.yaml\n  target: {kind: StatefulSet}\n",
				"/o/replicas.yaml":      "- op: add\n  path: /spec/replicas\n  value: 2\n",
			},
			opts: postrender.Options{Dir: "/o"},
			err:  "patch /o/replicas.yaml (target kind=StatefulSet) matches no object of the chart's output",
		},
		{
			name:  "a patch for the trust agent fails once trust distribution is off",
			files: map[string]string{"/p/ds.yaml": "- op: add\n  path: /spec/minReadySeconds\n  value: 5\n"},
			opts: postrender.Options{Trust: postrender.TrustOff, Patches: []postrender.Patch{{Path: "/p/ds.yaml",
				Target: &types.Selector{ResId: resIDKind("DaemonSet")}}}},
			err: "patch /p/ds.yaml (target kind=DaemonSet) matches no object of the chart's output",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.FS = memFS(t, tc.files)
			out, err := run(t, tc.opts, chartOutput)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			for _, s := range tc.contains {
				require.Contains(t, out, s)
			}
			for _, s := range tc.absent {
				require.NotContains(t, out, s)
			}
		})
	}
}

// ownTrust is chartOutput rendered with trustDistribution.enabled=false: no trust-agent objects.
func ownTrust(helm4 bool) string {
	docs := strings.Split(chartOutput, "\n---\n")
	out := strings.Join(docs[:2], "\n---\n") + "\n"
	if helm4 {
		out = strings.ReplaceAll(out, "  labels:\n    app.kubernetes.io/name", "  annotations:\n    postrenderer.helm.sh/postrender-filename: x.yaml\n  labels:\n    app.kubernetes.io/name")
	}
	return out
}

func TestTrustOn(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		in       string
		contains []string
		absent   []string
		warning  string
		err      string
	}{
		{
			name: "helm 3 output gets the node agent filled from the Service and Deployment, without its hooks",
			in:   ownTrust(false),
			contains: []string{"kind: DaemonSet", "--host=10.96.0.50:443", "--owner=connected-registry/cr", "name: cr-connected-registry-trust-agent",
				"secretName: cr-connected-registry-tls", "namespace: connected-registry"},
			absent:  []string{"__CR_", "post-delete"},
			warning: "helm uninstall will not remove the node agent's files",
		},
		{
			name:     "an IPv6 clusterIP is bracketed wherever it stands before :443, as containerd's certs.d and image references name it",
			in:       strings.Replace(ownTrust(false), `clusterIP: "10.96.0.50"`, `clusterIP: "fd00:10:96::50"`, 1),
			contains: []string{"--host=[fd00:10:96::50]:443"},
			absent:   []string{"fd00:10:96::50:443", "__CR_"},
		},
		{
			name:     "helm 4 output gets the node agent with its post-delete hook, each filed under its template",
			in:       ownTrust(true),
			contains: []string{"kind: DaemonSet", "helm.sh/hook: post-delete", "postrenderer.helm.sh/postrender-filename: connected-registry/templates/"},
			absent:   []string{"__CR_"},
		},
		{
			name:     "output that already has the node agent is left as it is",
			in:       chartOutput,
			contains: []string{"image: ghcr.io/connected-registry/connected-registry:0.1.0", "name: cr-connected-registry-trust-cleanup"},
		},
		{
			name: "output without the registry Service should fail",
			in:   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
			err:  postrender.ErrNoRegistryService.Error(),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var warn bytes.Buffer
			out, err := run(t, postrender.Options{Trust: postrender.TrustOn, FS: memFS(t, nil), Warn: &warn}, tc.in)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			for _, s := range tc.contains {
				require.Contains(t, out, s)
			}
			for _, s := range tc.absent {
				require.NotContains(t, out, s)
			}
			require.Contains(t, warn.String(), tc.warning)
		})
	}
}

func resIDKind(kind string) resid.ResId { return resid.ResId{Gvk: resid.Gvk{Kind: kind}} }

// TestPanicsBecomeErrors: a panic inside the build (here: a Renderer not made by New) comes back as an error.
func TestPanicsBecomeErrors(t *testing.T) {
	t.Parallel()
	var r postrender.Renderer
	_, err := r.Run(bytes.NewBufferString(chartOutput))
	require.ErrorIs(t, err, postrender.ErrKustomize)
	require.ErrorContains(t, err, "panicked")
}
