package registry_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connected-registry/connected-registry/internal/testing/acrparent"
)

// TestTokenParent runs the connected registry as the chart configures it against a parent that behaves as ACR
// does: token auth with the realm on its own host, scoped tokens that expire, blobs sent from a separate storage
// host with signed URLs. The registry reaches it through the parent gate (the chart's default), which must let
// it authenticate exactly as it would pointed at the parent: one token per scope for as long as it lives, and
// the storage host never gets the registry's credentials.
func TestTokenParent(t *testing.T) {
	t.Parallel()
	registryBin := registryBinary(t)
	productBin := productBinary(t)
	ca := newTestCA(t)
	const lifetime = 4 * time.Second
	par, err := acrparent.Start(context.Background(), acrparent.Options{
		Bin: registryBin, Dir: t.TempDir(), CA: ca.CA, TokenLifetime: lifetime,
	})
	must(t, err)
	t.Cleanup(par.Stop)
	want := newMultiArch(t)
	must(t, par.Push(context.Background(), repo+":"+tag, want.index))

	sc := scenario{name: "token parent", values: func(string) ([]string, map[string]any, map[string]map[string]string) {
		return nil, map[string]any{"connectionString": par.ConnectionString("cr")}, nil
	}}
	pd, _ := startConnectedRegistry(t, sc, par.Host, registryBin, productBin, ca)
	crHost := "127.0.0.1:" + strconv.Itoa(pd.Port)
	c := newClient(ca, nil)

	// A cold pull: through the gate, with one token for the repository, each blob from the storage host once.
	mark := par.Log()
	if err := c.pull(crHost+"/"+repo+":"+tag, want); err != nil {
		t.Fatalf("cold pull through the connected registry from the token parent: %v\nthe parent saw:\n%s", err, par.Log().Since(mark))
	}
	waitBlobsStored(t, pd.HostPath["storage.filesystem.rootdirectory"], want)
	cold := par.Log().Since(mark)
	t.Logf("the parent served the cold pull:\n%s", cold)
	if n := len(cold.Token); n != 1 {
		t.Errorf("the cold pull of one repository asked the token endpoint %d times, want once (the gate keeps the token)", n)
	}
	for _, tr := range cold.Token {
		if tr.Account != par.SyncToken.Name || tr.Status != 200 {
			t.Errorf("token request for account %q answered %d, want the sync token %q answered 200", tr.Account, tr.Status, par.SyncToken.Name)
		}
	}
	fetches := cold.BlobFetches()
	for _, d := range want.contentBlobs() {
		if fetches[d.String()] != 1 {
			t.Errorf("the storage host sent blob %s %d times, want once", d, fetches[d.String()])
		}
	}
	if n := cold.StorageAuthorizations(); n != 0 {
		t.Errorf("the storage host got the registry's Authorization header %d times", n)
	}
	if n := cold.APIAuth()["Basic"]; n != 0 {
		t.Errorf("%d API requests reached the parent with Basic credentials: only its token endpoint takes them", n)
	}

	// The token expires: a pull after its lifetime gets a new one, once.
	time.Sleep(lifetime)
	more := newMultiArchOf(t, 1<<10, 64<<10)
	must(t, par.Push(context.Background(), repo+":v2", more.index))
	mark = par.Log()
	if err := c.pull(crHost+"/"+repo+":v2", more); err != nil {
		t.Fatalf("pull after the token expired: %v\nthe parent saw:\n%s", err, par.Log().Since(mark))
	}
	if n := len(par.Log().Since(mark).Token); n != 1 {
		t.Errorf("a pull after the token expired asked the token endpoint %d times, want once", n)
	}

	// With the parent down, the cache serves.
	par.Stop()
	if err := c.pull(crHost+"/"+repo+":"+tag, want); err != nil {
		t.Fatalf("with the token parent down, pulling from the cache: %v", err)
	}
}

// TestTokenParentRefusesTheSyncToken: a wrong sync token password fails the pull, and both the registry's log
// and the gate's name the sync token and the parent's answer, never the password.
func TestTokenParentRefusesTheSyncToken(t *testing.T) {
	t.Parallel()
	registryBin := registryBinary(t)
	productBin := productBinary(t)
	ca := newTestCA(t)
	par := startACRParent(t, registryBin, ca)
	want := newMultiArchOf(t, 1<<10)
	must(t, par.Push(context.Background(), repo+":"+tag, want.index))

	const wrong = "Wrong-Sync-Password-123"
	cs := strings.Replace(par.ConnectionString("cr"), par.SyncToken.Password, wrong, 1)
	sc := scenario{name: "wrong password", values: func(string) ([]string, map[string]any, map[string]map[string]string) {
		return nil, map[string]any{"connectionString": cs}, nil
	}}
	pd, cr := startConnectedRegistry(t, sc, par.Host, registryBin, productBin, ca)
	crHost := "127.0.0.1:" + strconv.Itoa(pd.Port)
	// By tag, Distribution serves what it has cached when the parent refuses, and logs nothing of it; by digest,
	// it says why it has nothing to serve.
	for _, ref := range []string{repo + ":" + tag, repo + "@" + want.digest.String()} {
		if err := newClient(ca, nil).pull(crHost+"/"+ref, want); err == nil {
			t.Fatalf("a pull of %s with a wrong sync token password succeeded", ref)
		}
	}
	named := `the parent's token endpoint refused the sync token \"` + par.SyncToken.Name + `\" with 401 Unauthorized`
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(cr.out.String(), named) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(cr.out.String(), named) {
		t.Errorf("the registry's log does not name the sync token and the parent's answer (%s):\n%s", named, tail(cr.out.String(), 3000))
	}
	gateLog := pd.sidecarOutput("parent-gate")
	if !strings.Contains(gateLog, "the parent's token endpoint refused the sync token") || !strings.Contains(gateLog, "account="+par.SyncToken.Name) {
		t.Errorf("the gate's log does not name the refused sync token:\n%s", tail(gateLog, 3000))
	}
	for what, out := range map[string]string{"registry": cr.out.String(), "parent gate": gateLog} {
		if strings.Contains(out, wrong) {
			t.Errorf("the %s's log holds the sync token password", what)
		}
	}
}
