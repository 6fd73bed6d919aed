package registry_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/podemu"
)

// pod is the chart's registry pod run as processes of this test (internal/testing/podemu): the init containers with our
// connected-registry binary, the native sidecars and the registry container, every path under a volume mount remapped to a
// directory of the test.
type pod struct {
	*podemu.Pod
	sidecars []*process
}

// newPod reads the registry Deployment of res. external holds the Secrets the user creates (name → key →
// value) that the chart only references.
func newPod(t *testing.T, res *chartrender.Result, registryBin, productBin string, external map[string]map[string]string) *pod {
	t.Helper()
	p, err := podemu.New(res, podemu.Options{Dir: t.TempDir(), RegistryBin: registryBin, ProductBin: productBin,
		External: external, Port: freePort(t), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return &pod{Pod: p}
}

// start runs the pod: volumes, init containers (each sidecar started in its turn), then the registry container.
// Calling it again after stop is a new pod of the same Deployment: fresh emptyDirs, the same claim.
func (p *pod) start(t *testing.T) *process {
	t.Helper()
	for _, sc := range p.sidecars {
		sc.stop(t)
	}
	p.sidecars = nil
	registry, err := p.Start(func(c podemu.Command) error { return p.startSidecar(t, c) })
	if err != nil {
		t.Fatal(err)
	}
	return startProcess(t, "connected registry", registry.Bin, registry.Args, registry.Env)
}

// startSidecar starts a native sidecar in the background, as the kubelet does, and waits until it listens.
func (p *pod) startSidecar(t *testing.T, c podemu.Command) error {
	t.Helper()
	sc := startProcess(t, "sidecar "+c.Name, c.Bin, c.Args, c.Env)
	p.sidecars = append(p.sidecars, sc)
	for addr, local := range p.Listen {
		if err := podemu.WaitListening(local, 10*time.Second, sc.exited); err != nil {
			return fmt.Errorf("sidecar %s does not listen on %s (pod address %s): %w\n%s", c.Name, local, addr, err, sc.out.String())
		}
	}
	return nil
}

// sidecarOutput is what the sidecar name (its container name) has written, or "".
func (p *pod) sidecarOutput(name string) string {
	for _, sc := range p.sidecars {
		if sc.name == "sidecar "+name {
			return sc.out.String()
		}
	}
	return ""
}

// readinessURL is the URL of the registry container's readiness probe, on the remapped port.
func (p *pod) readinessURL(t *testing.T) string {
	t.Helper()
	url, err := p.ReadinessURL()
	if err != nil {
		t.Fatal(err)
	}
	return url
}
