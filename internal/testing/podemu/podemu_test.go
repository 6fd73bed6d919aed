package podemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// A pod shaped as the chart's: a tls-reloader, an init container, a sidecar with --listen, the registry.
const rendered = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: cr-connected-registry}
spec:
  template:
    spec:
      volumes:
        - {name: config, configMap: {name: cr-connected-registry-config}}
        - {name: tls, emptyDir: {}}
        - {name: helpers, emptyDir: {}}
        - {name: data, persistentVolumeClaim: {claimName: cr-data}}
        - {name: parent, secret: {secretName: user-parent}}
        - name: token
          projected: {sources: [{serviceAccountToken: {path: token}}]}
      initContainers:
        - name: tls-reloader
          image: example.com/connected-registry:1
          restartPolicy: Always
          args: [tls-reloader, --secret=cr-tls, --tls-dir=/etc/tls]
          volumeMounts: [{name: tls, mountPath: /etc/tls}, {name: token, mountPath: /var/run/token}]
        - name: helper
          image: example.com/connected-registry:1
          args: [install, --dest=/helpers/helper]
          volumeMounts: [{name: helpers, mountPath: /helpers}]
        - name: gate
          image: example.com/connected-registry:1
          restartPolicy: Always
          args: [parent-gate, --listen=127.0.0.1:8443]
      containers:
        - name: registry
          image: registry:3
          args: [serve, /etc/distribution/config.yml]
          env:
            - {name: CREDENTIALS, value: /etc/parent}
            - {name: HTTPS_PROXY, value: "http://127.0.0.1:8443"}
            - name: CPUS
              valueFrom: {resourceFieldRef: {resource: limits.cpu}}
          resources: {limits: {cpu: 1500m}}
          ports: [{name: https, containerPort: 5443}]
          readinessProbe: {httpGet: {path: /, port: https, scheme: HTTPS}}
          volumeMounts:
            - {name: config, mountPath: /etc/distribution}
            - {name: tls, mountPath: /etc/tls}
            - {name: data, mountPath: /var/lib/registry}
            - {name: parent, mountPath: /etc/parent}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cr-connected-registry-config}
data:
  config.yml: |
    http:
      addr: :5443
      tls: {certificate: /etc/tls/tls.crt}
    storage: {filesystem: {rootdirectory: /var/lib/registry}}
    proxy: {remoteurl: "http://127.0.0.1:8443"}
    metrics: {addr: ":9090"}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: cr-data}
---
apiVersion: v1
kind: Secret
metadata: {name: cr-tls}
stringData: {tls.crt: CERT, tls.key: KEY}
`

func render(t *testing.T, edit func(doc string) string) *chartrender.Result {
	t.Helper()
	doc := rendered
	if edit != nil {
		doc = edit(doc)
	}
	objs, err := chartrender.SplitYAML(strings.NewReader(doc))
	require.NoError(t, err)
	res := &chartrender.Result{}
	for _, o := range objs {
		res.Documents = append(res.Documents, chartrender.Document{Object: o})
	}
	return res
}

func newTestPod(t *testing.T, res *chartrender.Result) *Pod {
	t.Helper()
	product, err := exec.LookPath("true")
	require.NoError(t, err)
	p, err := New(res, Options{Dir: t.TempDir(), RegistryBin: "registry", ProductBin: product, Port: 40000,
		External: map[string]map[string]string{"user-parent": {"password": "secret"}}})
	require.NoError(t, err)
	return p
}

func TestStartRemapsThePod(t *testing.T) {
	p := newTestPod(t, render(t, nil))
	var sidecars []Command
	reg, err := p.Start(func(c Command) error { sidecars = append(sidecars, c); return nil })
	require.NoError(t, err)

	require.Len(t, sidecars, 1)
	gate := p.Listen["127.0.0.1:8443"]
	require.NotEmpty(t, gate)
	require.Equal(t, []string{"parent-gate", "--listen=" + gate}, sidecars[0].Args)
	require.Equal(t, []string{"serve", filepath.Join(p.Volumes["config"], "config.yml")}, reg.Args)
	require.Contains(t, reg.Env, "CREDENTIALS="+p.Volumes["parent"])
	require.Contains(t, reg.Env, "HTTPS_PROXY=http://"+gate)
	require.Contains(t, reg.Env, "CPUS=2")

	require.Equal(t, 5443, p.ContainerPort)
	require.Equal(t, ":5443", p.Remapped["http.addr"])
	require.Equal(t, "/var/lib/registry", p.Remapped["storage.filesystem.rootdirectory"])
	require.Equal(t, p.DataDir(), p.HostPath["storage.filesystem.rootdirectory"])
	require.Equal(t, "/etc/parent", p.Remapped["env CREDENTIALS"])
	require.Equal(t, "http://127.0.0.1:8443", p.Remapped["proxy.remoteurl"])
	require.Contains(t, p.Config, `remoteurl: "http://`+gate+`"`)
	require.Contains(t, p.Config, "addr: 127.0.0.1:40000")
	require.NotContains(t, p.Config, ":9090")
	url, err := p.ReadinessURL()
	require.NoError(t, err)
	require.Equal(t, "https://127.0.0.1:40000/", url)

	key, err := os.ReadFile(filepath.Join(p.Volumes["tls"], "tls.key"))
	require.NoError(t, err)
	require.Equal(t, "KEY", string(key))

	// A new pod: fresh emptyDirs, the same claim, the sidecar on the same port.
	require.NoError(t, os.WriteFile(filepath.Join(p.DataDir(), "kept"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(p.Volumes["helpers"], "gone"), nil, 0o644))
	_, err = p.Start(func(Command) error { return nil })
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(p.DataDir(), "kept"))
	require.NoFileExists(t, filepath.Join(p.Volumes["helpers"], "gone"))
	require.Equal(t, gate, p.Listen["127.0.0.1:8443"])
}

func TestStartRefusesWhatItCannotEmulate(t *testing.T) {
	for _, tc := range []struct{ old, new, want string }{
		{"image: registry:3", "image: registry:3\n          command: [/bin/registry]", "overrides the image's entrypoint"},
		{"args: [serve, /etc/distribution/config.yml]", "args: [serve, /elsewhere/config.yml]", "/elsewhere/config.yml, which is on no volume"},
		{"args: [serve, /etc/distribution/config.yml]", "args: [/etc/distribution/config.yml]", "want [serve <config>]"},
		{"name: helper\n          image: example.com/connected-registry:1", "name: helper\n          image: busybox:1", `runs image "busybox:1", not the connected-registry image`},
		{"name: helper\n          image: example.com/connected-registry:1", "name: helper\n          image: example.com/connected-registry:1\n          command: [sh]", "helper overrides the connected-registry image's entrypoint"},
		{"rootdirectory: /var/lib/registry", "rootdirectory: /var/cache", "storage.filesystem.rootdirectory = /var/cache is on no volume"},
		{"claimName: cr-data", "claimName: other", `PersistentVolumeClaim "other", which the chart does not render`},
		{"secretName: user-parent", "secretName: missing", `the Secret "missing" is neither rendered`},
		{"--tls-dir=/etc/tls", "--tls-dir=", "without --secret or a --tls-dir"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			p := newTestPod(t, render(t, func(doc string) string {
				require.Contains(t, doc, tc.old)
				return strings.Replace(doc, tc.old, tc.new, 1)
			}))
			_, err := p.Start(func(Command) error { return nil })
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestReadinessURLChecksThePort(t *testing.T) {
	p := newTestPod(t, render(t, func(doc string) string {
		return strings.Replace(doc, "port: https, scheme", "port: 8080, scheme", 1)
	}))
	_, err := p.Start(func(Command) error { return nil })
	require.NoError(t, err)
	_, err = p.ReadinessURL()
	require.ErrorContains(t, err, "checks port 8080, but the registry listens on 5443")
}

func TestCPUCeil(t *testing.T) {
	for q, want := range map[string]string{"500m": "1", "1000m": "1", "1001m": "2", "2": "2", "1.5": "2"} {
		got, err := cpuCeil(q)
		require.NoError(t, err)
		require.Equal(t, want, got, q)
	}
	_, err := cpuCeil("lots")
	require.Error(t, err)
}

func TestRemapArgs(t *testing.T) {
	mounts := map[string]string{"/etc": "/host/etc", "/etc/tls": "/host/tls"}
	require.Equal(t, []string{"--dir=/host/tls/x", "/host/etc/a", "/other", "--flag=/other", "plain"},
		remapArgs(mounts, []string{"--dir=/etc/tls/x", "/etc/a", "/other", "--flag=/other", "plain"}))
}

// TestEnvFromTheUserAndThePod: an environment variable may take a key of a Secret the user creates (an object
// store's credentials) and the pod's address (the parent gate's peer address), which Options give.
func TestEnvFromTheUserAndThePod(t *testing.T) {
	env := `            - name: ACCOUNTKEY
              valueFrom: {secretKeyRef: {name: user-parent, key: password}}
            - name: POD_IP
              valueFrom: {fieldRef: {fieldPath: status.podIP}}
            - {name: CREDENTIALS, value: /etc/parent}`
	res := render(t, func(doc string) string {
		return strings.Replace(doc, "            - {name: CREDENTIALS, value: /etc/parent}", env, 1)
	})
	p := newTestPod(t, res)
	_, err := p.Start(func(Command) error { return nil })
	require.ErrorContains(t, err, "reads status.podIP, and podemu.Options.PodIP is empty")

	p.opts.PodIP = "127.9.9.2"
	reg, err := p.Start(func(Command) error { return nil })
	require.NoError(t, err)
	require.Contains(t, reg.Env, "ACCOUNTKEY=secret")
	require.Contains(t, reg.Env, "POD_IP=127.9.9.2")
}
