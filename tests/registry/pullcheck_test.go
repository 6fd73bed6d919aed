package registry_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// TestPullCheck runs the chart's `helm test` command, with the arguments the chart renders, against the chart's
// registry pod and a real parent: it pulls an image a node would pull, and each way it can fail names the cause
// (an image the parent lacks, a certificate the published CA does not sign, nothing listening, a registry that
// asks for credentials).
func TestPullCheck(t *testing.T) {
	t.Parallel()
	registryBin, productBin := registryBinary(t), productBinary(t)
	ca := newTestCA(t)
	sc := byConnectionString
	par := startParent(t, registryBin, ca, sc.user, sc.password)
	want := newMultiArch(t)
	parentRef, err := name.ParseReference(par.host + "/" + repo + ":" + tag)
	must(t, err)
	must(t, remote.WriteIndex(parentRef, want.index, newClient(ca, &authn.Basic{Username: sc.user, Password: sc.password}).opts...))
	pd, _ := startConnectedRegistry(t, sc, par.host, registryBin, productBin, ca)
	crHost := "127.0.0.1:" + strconv.Itoa(pd.Port)

	// The test Pod's arguments as the chart renders them with test.image set.
	res, err := chartrender.Render(chartrender.Options{Set: []string{
		"service.clusterIP=" + clusterIP, "test.image=" + repo + ":" + tag, "test.timeout=30s",
	}, Values: map[string]any{"connectionString": "ConnectedRegistryName=cr;SyncTokenName=t;SyncTokenPassword=p;ParentGatewayEndpoint=" + par.host + ";ParentEndpointProtocol=https"}})
	must(t, err)
	testPod, ok := res.Find("Pod", "cr-connected-registry-pull-check")
	if !ok {
		t.Fatal("the chart renders no pull-check test Pod")
	}
	if testPod.Object["metadata"].(map[string]any)["annotations"].(map[string]any)["helm.sh/hook"] != "test" {
		t.Fatal("the pull-check Pod is not a helm test hook")
	}
	var args []string
	for _, a := range testPod.Object["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["args"].([]any) {
		args = append(args, a.(string))
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, caFile, ca.CertPEM, 0o644)
	other := newTestCA(t)
	otherCAFile := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, otherCAFile, other.CertPEM, 0o644)

	// run runs the binary with the chart's arguments, the pod's addresses replaced by the test's.
	run := func(registry, caPath, image string) (string, error) {
		var a []string
		for _, arg := range args {
			switch {
			case arg == "--registry="+clusterIP+":443":
				arg = "--registry=" + registry
			case arg == "--ca-file=/etc/connected-registry/trust/ca.crt":
				arg = "--ca-file=" + caPath
			case strings.HasPrefix(arg, "--image=") && image != "":
				arg = "--image=" + image
			}
			a = append(a, arg)
		}
		cmd := exec.Command(productBin, a...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("an image at the parent should be pulled through, each digest verified", func(t *testing.T) {
		out, err := run(crHost, caFile, "")
		if err != nil {
			t.Fatalf("pull-check failed: %v\n%s", err, out)
		}
		for _, s := range []string{"pulled " + crHost + "/" + repo + ":" + tag, "each digest verified"} {
			if !strings.Contains(out, s) {
				t.Fatalf("output lacks %q:\n%s", s, out)
			}
		}
	})
	failures := []struct{ name, registry, caFile, image, want string }{
		{"a tag the parent lacks should be named with test.image", crHost, caFile, repo + ":missing",
			"the image is neither cached nor at the parent: " + crHost + "/" + repo + ":missing: check that test.image names"},
		{"a certificate the published CA does not sign should be named", crHost, otherCAFile, "",
			"the registry's certificate is not trusted: https://" + crHost + " presents a certificate that the published CA bundle " + otherCAFile + " does not sign"},
		{"nothing listening should ask whether the registry pod is Ready", "127.0.0.1:" + strconv.Itoa(freePort(t)), caFile, "",
			"the registry does not answer at https://127.0.0.1:"},
		{"a registry that asks for credentials should say pods need imagePullSecrets", par.host, caFile, "",
			"the registry refused an anonymous pull: https://" + par.host + " answered 401: client authentication is on"},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			out, err := run(f.registry, f.caFile, f.image)
			if err == nil {
				t.Fatalf("pull-check succeeded:\n%s", out)
			}
			if !strings.Contains(out, f.want) {
				t.Fatalf("output lacks %q:\n%s", f.want, out)
			}
		})
	}
}
