package registry_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// releaseEnv is `make release` run against a Distribution registry on 127.0.0.1 with TLS and htpasswd, with
// throwaway keys, and the tools to verify what it published as a user would.
type releaseEnv struct {
	host, caFile, user, password string
	cosign, helm                 string
	home                         string // HOME of every tool the test runs
	out                          string // RELEASE_OUT
	trustedRoot                  string // an empty Sigstore trusted root: no TUF repository is fetched
	cosignPub, otherCosignPub    string
	pubring, otherPubring        string
	platforms                    []string
	client                       *client
}

const releaseCosignPassword = "cosign-key-passphrase-1"

// TestRelease runs ci/release/release.sh (make release) and proves what it publishes: every image and the OCI
// chart verify with the release's cosign key and not with another, a signature copied onto a tampered image
// does not verify, the SBOM attestations verify and list the Go modules of each binary, and the chart carries
// cert-manager and verifies with `helm pull --verify`. It builds every image for two platforms and needs
// bin/syft and bin/cosign (make release-test).
func TestRelease(t *testing.T) {
	if os.Getenv("RELEASE_TEST") == "" {
		t.Skip("set RELEASE_TEST=1 to run make release against a local registry (make release-test builds bin/syft and bin/cosign first)")
	}
	ctx := context.Background()
	e := &releaseEnv{
		user: "releaser", password: "release-password-1",
		cosign:    toolBinary(t, "cosign", "COSIGN_BIN", "cosign v2"),
		helm:      toolBinary(t, "helm3", "HELM3_BIN", "helm v3"),
		platforms: []string{"linux/amd64", "linux/arm64"},
	}
	toolBinary(t, "syft", "SYFT_BIN", "syft")
	dir := t.TempDir()
	e.home, e.out = filepath.Join(dir, "home"), filepath.Join(dir, "release")
	must(t, os.MkdirAll(e.home, 0o700))
	// Without --trusted-root, cosign verify looks the public-good TUF repository up even with --key: a DNS query
	// leaves the machine. An empty trusted root holds no transparency log, CA or timestamp authority to trust.
	e.trustedRoot = filepath.Join(dir, "trusted_root.json")
	writeFile(t, e.trustedRoot, []byte(`{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644)
	ca := newTestCA(t)
	e.caFile = filepath.Join(dir, "ca.crt")
	writeFile(t, e.caFile, ca.CertPEM, 0o644)
	e.host = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	reg, err := testenv.StartParent(ctx, testenv.ParentOptions{
		Bin: registryBinary(t), Dir: filepath.Join(dir, "registry"), Addr: e.host, CA: ca.CA,
		User: e.user, Password: e.password,
	})
	must(t, err)
	t.Cleanup(reg.Stop)
	e.client = newClient(ca, &authn.Basic{Username: e.user, Password: e.password})

	key := e.cosignKeyPair(t, filepath.Join(dir, "cosign"))
	e.cosignPub = key + ".pub"
	e.otherCosignPub = e.cosignKeyPair(t, filepath.Join(dir, "other-cosign")) + ".pub"
	secring, pubring := pgpKeyRing(t, filepath.Join(dir, "pgp"), "connected-registry release test")
	e.pubring = pubring
	_, e.otherPubring = pgpKeyRing(t, filepath.Join(dir, "other-pgp"), "someone else")

	start := time.Now()
	cmd := exec.Command("bash", filepath.Join(chartrender.RepoRoot(), "ci/release/release.sh"))
	cmd.Env = append(e.toolEnv(),
		"RELEASE_REGISTRY="+e.host, "RELEASE_USERNAME="+e.user, "RELEASE_PASSWORD="+e.password,
		"RELEASE_CA="+e.caFile, "RELEASE_OUT="+e.out, "RELEASE_PLATFORMS="+strings.Join(e.platforms, ","),
		"COSIGN_KEY="+key+".key", "COSIGN_PASSWORD="+releaseCosignPassword,
		"HELM_KEYRING="+secring, "HELM_SIGN_KEY=connected-registry release test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, tail(string(out), 6000))
	}
	t.Logf("make release took %s", time.Since(start).Round(time.Second))

	refs := readLines(t, filepath.Join(e.out, "digests.txt"))
	if len(refs) != 3 {
		t.Fatalf("digests.txt lists %d references, want the product image, the registry image and the chart: %q", len(refs), refs)
	}
	product, registry, chart := refs[0], refs[1], refs[2]
	for ref, repo := range map[string]string{
		product:  e.host + "/connected-registry/connected-registry@sha256:",
		registry: e.host + "/connected-registry/distribution@sha256:",
		chart:    e.host + "/connected-registry/charts/connected-registry@sha256:",
	} {
		if !strings.HasPrefix(ref, repo) {
			t.Fatalf("digests.txt lists %s, want %s…", ref, repo)
		}
	}

	t.Run("every image, each platform manifest and the chart should verify with the release key", func(t *testing.T) {
		for _, ref := range []string{product, registry, chart} {
			e.mustVerify(t, ref)
		}
		for _, ref := range []string{product, registry} {
			for _, m := range e.platformManifests(t, ref) {
				e.mustVerify(t, refRepo(ref)+"@"+m.Digest.String())
			}
		}
		// By tag, as a user pulls.
		e.mustVerify(t, e.host+"/connected-registry/distribution:v3.1.2")
	})

	t.Run("a signature should not verify with another key", func(t *testing.T) {
		for _, ref := range []string{product, registry, chart} {
			if out, err := e.run(e.cosign, append([]string{"verify", "--key", e.otherCosignPub}, e.cosignFlags(ref)...)...); err == nil {
				t.Errorf("cosign verify of %s with another key succeeded:\n%s", ref, out)
			}
		}
	})

	t.Run("each platform's SBOM attestation should verify and list every Go module of its binary", func(t *testing.T) {
		manifests := readLines(t, filepath.Join(e.out, "manifests.txt"))
		if len(manifests) != 2*len(e.platforms) {
			t.Fatalf("manifests.txt lists %d platform images, want %d: %q", len(manifests), 2*len(e.platforms), manifests)
		}
		for _, line := range manifests {
			ref, platform, _ := strings.Cut(line, " ")
			goos, goarch, _ := strings.Cut(platform, "/")
			doc := e.sbomAttestation(t, ref)
			switch {
			case strings.HasPrefix(ref, refRepo(product)+"@"):
				requireModules(t, doc, ref, goListModules(t, goos, goarch, "./cmd/connected-registry"))
			case strings.HasPrefix(ref, refRepo(registry)+"@") && platform == "linux/"+runtime.GOARCH:
				// The registry image's binary is built from the module bin/registry is built from: its
				// dependencies are those go version -m bin/registry lists, for this machine's platform.
				requireModules(t, doc, ref, goVersionModules(t, registryBinary(t)))
			}
		}
		if out, err := e.run(e.cosign, append([]string{"verify-attestation", "--key", e.otherCosignPub, "--type", "spdxjson"},
			e.cosignFlags(strings.Fields(manifests[0])[0])...)...); err == nil {
			t.Errorf("cosign verify-attestation with another key succeeded:\n%s", tail(out, 1000))
		}
	})

	t.Run("the chart should carry cert-manager and verify with helm pull --verify", func(t *testing.T) {
		version := chartVersion(t)
		pull := func(keyring, dest string) (string, error) {
			return e.run(e.helm, "pull", "oci://"+e.host+"/connected-registry/charts/connected-registry", "--version", version,
				"--verify", "--keyring", keyring, "--ca-file", e.caFile, "--username", e.user, "--password", e.password,
				"--destination", dest)
		}
		dest := t.TempDir()
		out, err := pull(e.pubring, dest)
		if err != nil {
			t.Fatalf("helm pull --verify with the release's public key: %v\n%s", err, out)
		}
		if !strings.Contains(out, "Signed by: connected-registry release test") || !strings.Contains(out, "Chart Hash Verified: sha256:") {
			t.Errorf("helm pull --verify printed no signer and hash:\n%s", out)
		}
		if out, err := pull(e.otherPubring, t.TempDir()); err == nil {
			t.Errorf("helm pull --verify with another public key succeeded:\n%s", out)
		}
		tgz := filepath.Join(dest, "connected-registry-"+version+".tgz")
		cm := tgzFile(t, tgz, "connected-registry/charts/cert-manager/Chart.yaml")
		if !strings.Contains(cm, "\nversion: "+chartrender.CertManagerVersion+"\n") {
			t.Errorf("the vendored cert-manager chart is not %s:\n%s", chartrender.CertManagerVersion, cm)
		}
		// Offline, with no repository configured: the default install renders cert-manager from charts/.
		rendered, err := e.run(e.helm, "template", "cr", tgz, "--kube-version", chartrender.DefaultKubeVersion, "-f",
			filepath.Join(chartrender.ChartDir(), "ci", "default-values.yaml"))
		if err != nil {
			t.Fatalf("helm template of the pulled chart: %v\n%s", err, tail(rendered, 3000))
		}
		if !strings.Contains(rendered, "kind: Deployment\nmetadata:\n  name: cert-manager-webhook\n") {
			t.Error("the pulled chart's default install renders no cert-manager webhook")
		}
		// A changed byte in the packaged chart breaks its provenance.
		local := filepath.Join(e.out, "chart", "connected-registry-"+version+".tgz")
		data, err := os.ReadFile(local)
		must(t, err)
		data[len(data)/2] ^= 0xff
		tampered := filepath.Join(t.TempDir(), filepath.Base(local))
		writeFile(t, tampered, data, 0o644)
		prov, err := os.ReadFile(local + ".prov")
		must(t, err)
		writeFile(t, tampered+".prov", prov, 0o644)
		if out, err := e.run(e.helm, "verify", "--keyring", e.pubring, tampered); err == nil {
			t.Errorf("helm verify of a changed chart succeeded:\n%s", out)
		}
	})

	// Last: it moves the product image's tag.
	t.Run("a signature copied onto a tampered image should not verify", func(t *testing.T) {
		repo := refRepo(product)
		tag := repo + ":" + chartVersion(t)
		tampered := e.pushTampered(t, product, tag)
		// The attacker copies the signatures and the SBOM attestation to the tags cosign looks them up by.
		sigTag := func(d string) string { return repo + ":" + strings.Replace(d, ":", "-", 1) }
		e.copyManifest(t, sigTag(refDigest(product))+".sig", sigTag(tampered.index.String())+".sig")
		e.copyManifest(t, sigTag(tampered.signedManifest.String())+".sig", sigTag(tampered.manifest.String())+".sig")
		e.copyManifest(t, sigTag(tampered.signedManifest.String())+".att", sigTag(tampered.manifest.String())+".att")
		for _, ref := range []string{tag, repo + "@" + tampered.index.String(), repo + "@" + tampered.manifest.String()} {
			if out, err := e.run(e.cosign, append([]string{"verify", "--key", e.cosignPub}, e.cosignFlags(ref)...)...); err == nil {
				t.Errorf("cosign verify of the tampered %s succeeded:\n%s", ref, out)
			} else {
				t.Logf("cosign verify of the tampered %s failed as it should: %s", ref, tail(out, 300))
			}
		}
		ref := repo + "@" + tampered.manifest.String()
		if out, err := e.run(e.cosign, append([]string{"verify-attestation", "--key", e.cosignPub, "--type", "spdxjson"},
			e.cosignFlags(ref)...)...); err == nil {
			t.Errorf("cosign verify-attestation of the tampered %s succeeded:\n%s", ref, tail(out, 1000))
		} else {
			t.Logf("cosign verify-attestation of the tampered %s failed as it should: %s", ref, tail(out, 300))
		}
		e.mustVerify(t, product)
		e.mustVerify(t, repo+"@"+tampered.signedManifest.String())
	})
}

// toolEnv is the environment of the release script and of every tool: this process's, with a HOME of its own
// (cosign, helm and syft keep their configuration there) and the Go caches kept.
func (e *releaseEnv) toolEnv() []string {
	keep := map[string]string{}
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if err == nil {
			keep[v] = strings.TrimSpace(string(out))
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || k == "DOCKER_CONFIG" || strings.HasPrefix(k, "XDG_") || strings.HasPrefix(k, "HELM_") ||
			strings.HasPrefix(k, "COSIGN_") || strings.HasPrefix(k, "SYFT_") || keep[k] != "" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range keep {
		env = append(env, k+"="+v)
	}
	return append(env, "HOME="+e.home, "TUF_ROOT="+filepath.Join(e.home, ".sigstore", "root"))
}

func (e *releaseEnv) run(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(e.toolEnv(), "COSIGN_PASSWORD="+releaseCosignPassword)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cosignFlags are the flags of a key-based cosign verification against the test registry, then ref. The
// signatures are not in a transparency log: the release runs offline.
func (e *releaseEnv) cosignFlags(ref string) []string {
	return []string{"--insecure-ignore-tlog=true", "--trusted-root", e.trustedRoot, "--registry-cacert", e.caFile,
		"--registry-username", e.user, "--registry-password", e.password, ref}
}

// mustVerify runs cosign verify --key of ref, by digest or tag, and checks that the signed payload names the
// digest ref resolves to.
func (e *releaseEnv) mustVerify(t *testing.T, ref string) {
	t.Helper()
	out, err := e.run(e.cosign, append([]string{"verify", "--key", e.cosignPub, "--output", "json"}, e.cosignFlags(ref)...)...)
	if err != nil {
		t.Errorf("cosign verify --key of %s: %v\n%s", ref, err, out)
		return
	}
	want := refDigest(ref)
	if want == "" {
		want = e.head(t, ref).String()
	}
	if !strings.Contains(out, `"docker-manifest-digest":"`+want+`"`) {
		t.Errorf("cosign verify of %s printed no payload for %s:\n%s", ref, want, out)
	}
}

func (e *releaseEnv) head(t *testing.T, ref string) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	must(t, err)
	desc, err := remote.Head(r, e.client.opts...)
	must(t, err)
	return desc.Digest
}

func (e *releaseEnv) platformManifests(t *testing.T, ref string) []v1.Descriptor {
	t.Helper()
	r, err := name.ParseReference(ref)
	must(t, err)
	idx, err := remote.Index(r, e.client.opts...)
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	if len(im.Manifests) != len(e.platforms) {
		t.Fatalf("%s lists %d manifests, want one per platform of %q", ref, len(im.Manifests), e.platforms)
	}
	return im.Manifests
}

// sbomAttestation verifies the spdxjson attestation of the platform image ref with the release key and returns
// its SPDX document.
func (e *releaseEnv) sbomAttestation(t *testing.T, ref string) spdxDocument {
	t.Helper()
	out, err := e.run(e.cosign, append([]string{"verify-attestation", "--key", e.cosignPub, "--type", "spdxjson"}, e.cosignFlags(ref)...)...)
	if err != nil {
		t.Fatalf("cosign verify-attestation of %s: %v\n%s", ref, err, tail(out, 3000))
	}
	var docs []spdxDocument
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var envelope struct{ PayloadType, Payload string }
		must(t, json.Unmarshal(line, &envelope))
		payload, err := base64.StdEncoding.DecodeString(envelope.Payload)
		must(t, err)
		var st struct {
			PredicateType string `json:"predicateType"`
			Subject       []struct {
				Digest map[string]string `json:"digest"`
			} `json:"subject"`
			Predicate spdxDocument `json:"predicate"`
		}
		must(t, json.Unmarshal(payload, &st))
		if len(st.Subject) != 1 || "sha256:"+st.Subject[0].Digest["sha256"] != refDigest(ref) {
			t.Errorf("the attestation of %s has subject %+v, want %s", ref, st.Subject, refDigest(ref))
		}
		if st.PredicateType != "https://spdx.dev/Document" {
			t.Errorf("the attestation of %s has predicate type %s, want SPDX", ref, st.PredicateType)
		}
		docs = append(docs, st.Predicate)
	}
	must(t, sc.Err())
	if len(docs) != 1 {
		t.Fatalf("%s has %d verified SBOM attestations, want 1", ref, len(docs))
	}
	return docs[0]
}

// requireModules fails unless the SBOM lists every module path@version of want.
func requireModules(t *testing.T, doc spdxDocument, ref string, want []string) {
	t.Helper()
	if len(want) < 10 {
		t.Fatalf("only %d modules to look for in the SBOM of %s: %q", len(want), ref, want)
	}
	have := map[string]bool{}
	for _, p := range doc.Packages {
		have[p.Name+"@"+p.VersionInfo] = true
	}
	var missing []string
	for _, m := range want {
		if !have[m] {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the SBOM of %s lacks %d of the binary's %d modules: %q", ref, len(missing), len(want), missing)
	}
}

type spdxDocument struct {
	Name     string `json:"name"`
	Packages []struct {
		Name        string `json:"name"`
		VersionInfo string `json:"versionInfo"`
	} `json:"packages"`
}

// tamperedImage is an index pushed in place of a signed one, with its first platform's image changed.
type tamperedImage struct {
	index, manifest v1.Hash // the tampered index and platform manifest
	signedManifest  v1.Hash // the signed platform manifest it replaces
}

// pushTampered pushes, under tag, the index of signed with a random layer added to its first platform's image.
func (e *releaseEnv) pushTampered(t *testing.T, signed, tag string) tamperedImage {
	t.Helper()
	r, err := name.ParseReference(signed)
	must(t, err)
	idx, err := remote.Index(r, e.client.opts...)
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	first := im.Manifests[0]
	img, err := idx.Image(first.Digest)
	must(t, err)
	layer, err := random.Layer(1<<10, types.OCILayer)
	must(t, err)
	img, err = mutate.AppendLayers(img, layer)
	must(t, err)
	tampered := mutate.AppendManifests(mutate.RemoveManifests(idx, func(d v1.Descriptor) bool { return d.Digest == first.Digest }),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: first.Platform}})
	tr, err := name.ParseReference(tag)
	must(t, err)
	must(t, remote.WriteIndex(tr, tampered, e.client.opts...))
	out := tamperedImage{signedManifest: first.Digest}
	out.index, err = tampered.Digest()
	must(t, err)
	out.manifest, err = img.Digest()
	must(t, err)
	if out.index.String() == refDigest(signed) || out.manifest == first.Digest {
		t.Fatal("the tampered image has a signed digest")
	}
	return out
}

// copyManifest puts the manifest of from under the tag of to, in the same repository.
func (e *releaseEnv) copyManifest(t *testing.T, from, to string) {
	t.Helper()
	fr, err := name.ParseReference(from)
	must(t, err)
	desc, err := remote.Get(fr, e.client.opts...)
	must(t, err)
	tr, err := name.ParseReference(to)
	must(t, err)
	must(t, remote.Put(tr, desc, e.client.opts...))
}

// cosignKeyPair makes a cosign key pair prefix.key / prefix.pub and returns prefix.
func (e *releaseEnv) cosignKeyPair(t *testing.T, dir string) string {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o700))
	cmd := exec.Command(e.cosign, "generate-key-pair", "--output-key-prefix", "cosign")
	cmd.Dir = dir
	cmd.Env = append(e.toolEnv(), "COSIGN_PASSWORD="+releaseCosignPassword)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return filepath.Join(dir, "cosign")
}

// pgpKeyRing makes a throwaway PGP key named name and writes its secret and public keyrings, in the binary
// format helm package --sign and helm verify read.
func pgpKeyRing(t *testing.T, dir, name string) (secring, pubring string) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o700))
	entity, err := openpgp.NewEntity(name, "", "release-test@example.invalid", nil)
	must(t, err)
	var sec, pub bytes.Buffer
	must(t, entity.SerializePrivate(&sec, nil))
	must(t, entity.Serialize(&pub))
	secring, pubring = filepath.Join(dir, "secring.gpg"), filepath.Join(dir, "pubring.gpg")
	writeFile(t, secring, sec.Bytes(), 0o600)
	writeFile(t, pubring, pub.Bytes(), 0o644)
	return secring, pubring
}

// goListModules lists module@version of every dependency of pkg built for goos/goarch, the main module left out.
func goListModules(t *testing.T, goos, goarch, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}@{{.Version}}{{end}}{{end}}", pkg)
	cmd.Dir = chartrender.RepoRoot()
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return uniqueLines(string(out))
}

// goVersionModules lists the dep lines of go version -m bin as module@version.
func goVersionModules(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).Output()
	must(t, err)
	var mods []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "dep" {
			mods = append(mods, f[1]+"@"+f[2])
		}
	}
	return mods
}

func uniqueLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	return uniqueLines(string(data))
}

func chartVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartrender.ChartDir(), "Chart.yaml"))
	must(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "version: "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("Chart.yaml has no version")
	return ""
}

// tgzFile returns the content of path in a gzipped tar.
func tgzFile(t *testing.T, tgz, path string) string {
	t.Helper()
	f, err := os.Open(tgz)
	must(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	must(t, err)
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no %s", tgz, path)
		}
		must(t, err)
		if h.Name == path {
			data, err := io.ReadAll(tr)
			must(t, err)
			return string(data)
		}
	}
}

// refRepo is the repository of "host/repo@digest" or "host/repo:tag".
func refRepo(ref string) string {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ref
	}
	return r.Context().Name()
}

// refDigest is the digest of "host/repo@digest", or "" for a tag.
func refDigest(ref string) string {
	if _, d, ok := strings.Cut(ref, "@"); ok {
		return d
	}
	return ""
}
