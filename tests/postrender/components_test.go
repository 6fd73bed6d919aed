package postrender_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// podSpecs returns every pod spec of a helm output stream, by "Kind/name", with the objects' annotations.
func podSpecs(t *testing.T, out string) (map[string]map[string]any, map[string]map[string]any) {
	t.Helper()
	specs, annotations := map[string]map[string]any{}, map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewBufferString(out))
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if obj == nil {
			continue
		}
		meta, _ := obj["metadata"].(map[string]any)
		id := obj["kind"].(string) + "/" + meta["name"].(string)
		annotations[id], _ = meta["annotations"].(map[string]any)
		spec, _ := obj["spec"].(map[string]any)
		for _, path := range [][]string{{"template", "spec"}, {"jobTemplate", "spec", "template", "spec"}} {
			cur := spec
			for _, k := range path {
				cur, _ = cur[k].(map[string]any)
			}
			if cur != nil {
				specs[id] = cur
			}
		}
		if obj["kind"] == "Pod" {
			specs[id] = spec
		}
	}
	return specs, annotations
}

// containers returns a pod spec's init containers and containers by name.
func containers(spec map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, key := range []string{"initContainers", "containers"} {
		list, _ := spec[key].([]any)
		for _, c := range list {
			m := c.(map[string]any)
			out[m["name"].(string)] = m
		}
	}
	return out
}

func envValue(c map[string]any, name string) string {
	list, _ := c["env"].([]any)
	for _, e := range list {
		m := e.(map[string]any)
		if m["name"] == name {
			v, _ := m["value"].(string)
			return v
		}
	}
	return ""
}

// TestHTTPProxyReachesTheParentClient: the http-proxy component gives the outbound proxy to the container that
// connects to the parent, whichever the chart rendered (the parent gate, or the registry itself without the gate
// and with the acr engine), gives none to a registry that only talks to the gate, and adds no container.
func TestHTTPProxyReachesTheParentClient(t *testing.T) {
	t.Parallel()
	const proxy = "http://proxy.example.com:3128"
	cases := []struct {
		name, scenario, client string
		set                    []string
	}{
		{"parent gate", "cert-manager-preinstalled", "parent-gate", nil},
		{"no gate", "cert-manager-preinstalled", "registry", []string{"--set", "registry.parent.responseTimeout=0s"}},
		{"acr engine", "acr", "registry", nil},
	}
	for _, cli := range helmCLIs {
		for _, tc := range cases {
			t.Run(cli+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				out, all, err := templateWith(t, cli, tc.scenario, tc.set, "--component=kustomize/components/http-proxy")
				require.NoError(t, err, all)
				specs, annotations := podSpecs(t, out)
				deploy := "Deployment/cr-connected-registry"
				require.Equal(t, tc.client, annotations[deploy]["connected-registry.io/parent-client"])
				cs := containers(specs[deploy])
				require.Contains(t, cs, tc.client)
				require.Equal(t, proxy, envValue(cs[tc.client], "HTTPS_PROXY"), "%s connects to the parent", tc.client)
				require.Contains(t, envValue(cs[tc.client], "NO_PROXY"), ".svc")
				if tc.client == "parent-gate" {
					require.Empty(t, envValue(cs["registry"], "HTTPS_PROXY"), "behind the gate the registry talks only to loopback")
				} else {
					require.NotContains(t, cs, "parent-gate")
				}
				for id, spec := range specs {
					for name, c := range containers(spec) {
						require.NotEmpty(t, c["image"], "%s container %s has no image: a patch added it", id, name)
					}
				}
			})
		}
	}
}

// TestImageMirrorReachesEveryImage: with the image-mirror component every image the release runs comes from the
// mirror, images passed as arguments included. Helm 3 never post-renders hooks, so there the hooks' images come
// from the values file beside the component (kustomize/components/image-mirror/helm3-hooks.yaml); Helm 4
// post-renders every object.
func TestImageMirrorReachesEveryImage(t *testing.T) {
	t.Parallel()
	for _, cli := range helmCLIs {
		for _, scenario := range []string{"default", "acr"} {
			t.Run(cli+"/"+scenario, func(t *testing.T) {
				t.Parallel()
				var set []string
				if cli == "helm3" {
					set = []string{"-f", "kustomize/components/image-mirror/helm3-hooks.yaml"}
				}
				out, all, err := templateWith(t, cli, scenario, set, "--component=kustomize/components/image-mirror")
				require.NoError(t, err, all)
				specs, _ := podSpecs(t, out)
				require.NotEmpty(t, specs)
				for id, spec := range specs {
					for name, c := range containers(spec) {
						image, _ := c["image"].(string)
						require.True(t, strings.HasPrefix(image, "mirror.example.com/"), "%s container %s runs %s", id, name, image)
						args, _ := c["args"].([]any)
						for _, a := range args {
							s, _ := a.(string)
							if v, ok := strings.CutPrefix(s, "--image="); ok {
								require.True(t, strings.HasPrefix(v, "mirror.example.com/"), "%s container %s passes %s", id, name, s)
							}
						}
					}
				}
			})
		}
	}
}
