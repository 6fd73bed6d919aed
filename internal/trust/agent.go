package trust

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

// requestTimeout bounds each request of the agent to the API server.
const requestTimeout = 10 * time.Second

// Agent is the node agent of trust distribution, one per node (a DaemonSet): it keeps the node's certs.d entry
// for the registry (ca.crt and hosts.toml) equal to the registry's CA bundle, acknowledges each bundle it
// installed in its node's Lease, reports whether containerd will use the entry, and never restarts
// containerd. It leaves the entry on the node when it stops: a restarted or upgraded agent must not take trust
// away; the chart's post-delete cleanup removes it (Cleanup).
type Agent struct {
	// Entry is the node's certs.d entry for the registry.
	Entry *Entry
	// NodeName is this pod's node, for reports and acknowledgements.
	NodeName string
	// Bundle is the trust bundle ConfigMap the registry pod publishes the CA to; the agent reads it through the
	// API, so a new CA reaches the node in seconds. Nil reads CAFile instead.
	Bundle *bundle.ConfigMap
	// Acks receives the node's acknowledgement of each bundle it installed; nil acknowledges nothing.
	Acks *bundle.Acks
	// CAFile is the CA as a file, when Bundle is nil.
	CAFile string
	// ContainerdConfig and RegistriesYAML are read to tell whether containerd will use the entry; empty when not
	// mounted. HostContainerdConfig is ContainerdConfig's path on the node, for reports.
	ContainerdConfig     string
	HostContainerdConfig string
	RegistriesYAML       string
	// Interval between two passes of Run.
	Interval time.Duration
	// Events receives the agent's reports besides its readiness; nil sends none.
	Events EventSink
	// Log receives the state changes; nil discards them.
	Log *slog.Logger

	// acked is what the node's Lease acknowledges, as read at ackRead or last written.
	acked   bundle.AckState
	ackRead time.Time
	// ready is the last state: trust in place and containerd uses it.
	mu     sync.Mutex
	ready  bool
	reason string
}

// Run makes a pass every Interval until ctx ends, printing each new state to out.
func (a *Agent) Run(ctx context.Context, out io.Writer) error {
	fmt.Fprintf(out, "trust-agent: keeping %s/%s equal to %s on node %s\n", a.Entry.HostDir, a.Entry.Host, a.source(), a.NodeName)
	var last string
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	for {
		state := a.Sync(ctx)
		if state != last {
			fmt.Fprintln(out, "trust-agent: "+state)
			last = state
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync makes one pass: read the CA, install it when the node's entry differs, acknowledge it, detect containerd's
// use of it, and report a change of state. It returns the state in one line.
func (a *Agent) Sync(ctx context.Context) string {
	e := a.Entry
	ca, err := a.readCA(ctx)
	if err != nil {
		return a.setState(ctx, false, "CAUnavailable", fmt.Sprintf("reading the registry's CA from %s: %v", a.source(), err))
	}
	changed, err := e.Install(ca)
	if err != nil {
		return a.setState(ctx, false, "TrustFailed", fmt.Sprintf("writing %s/%s: %v", e.HostDir, e.Host, err))
	}
	d := Detect(DetectOptions{ContainerdConfig: a.ContainerdConfig, RegistriesYAML: a.RegistriesYAML,
		HostCertsDir: e.HostDir, Host: e.Host})
	d.Reason = strings.ReplaceAll(d.Reason, a.ContainerdConfig+" ", a.HostContainerdConfig+" ")
	fp := Fingerprint(ca)
	if len(changed) > 0 {
		a.log().Info("wrote the registry's trust", "files", changed, "ca", fp)
		if a.Events != nil {
			for i, f := range changed {
				changed[i] = strings.Replace(f, e.Dir, e.HostDir, 1)
			}
			a.Events.Event(ctx, false, "TrustWritten", fmt.Sprintf("node %s: wrote %s (CA %s)", a.NodeName, strings.Join(changed, ", "), fp))
		}
	}
	containerd := bundle.ContainerdUses
	if d.Verdict != WillUse {
		containerd = bundle.ContainerdIgnores
	}
	a.acknowledge(ctx, bundle.AckState{Fingerprint: bundle.Fingerprint(ca), Containerd: containerd})
	if d.Verdict != WillUse {
		return a.setState(ctx, false, "ContainerdIgnoresTrust", fmt.Sprintf("%s/%s holds CA %s, but containerd will not use it (%s): %s",
			e.HostDir, e.Host, fp, d.Verdict, d.Reason))
	}
	return a.setState(ctx, true, "TrustInPlace", fmt.Sprintf("%s/%s holds CA %s and containerd uses it: %s", e.HostDir, e.Host, fp, d.Reason))
}

// ackRecheck is how often the agent reads its Lease again, so a Lease someone deleted is written again.
const ackRecheck = time.Minute

// acknowledge records in the node's Lease the bundle the node holds and whether containerd uses it, once per
// change; a failure is retried on the next pass.
func (a *Agent) acknowledge(ctx context.Context, st bundle.AckState) {
	if a.Acks == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if time.Since(a.ackRead) > ackRecheck {
		acked, err := a.Acks.GetState(ctx, a.NodeName)
		if err != nil {
			a.log().Warn("reading the node's acknowledgement", "lease", a.Acks.Name(a.NodeName), "err", err)
			return
		}
		a.acked, a.ackRead = acked, time.Now()
	}
	if a.acked == st {
		return
	}
	if err := a.Acks.Record(ctx, a.NodeName, st); err != nil {
		a.log().Warn("acknowledging the bundle", "lease", a.Acks.Name(a.NodeName), "err", err)
		return
	}
	a.acked = st
}

func (a *Agent) source() string {
	if a.Bundle != nil {
		return "ConfigMap " + a.Bundle.Namespace + "/" + a.Bundle.Name
	}
	return a.CAFile
}

func (a *Agent) readCA(ctx context.Context) ([]byte, error) {
	if a.Bundle == nil {
		return os.ReadFile(a.CAFile)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return a.Bundle.Read(ctx)
}

func (a *Agent) setState(ctx context.Context, ready bool, reason, msg string) string {
	line := fmt.Sprintf("%s: %s", reason, msg)
	a.mu.Lock()
	changed := a.ready != ready || a.reason != line
	a.ready, a.reason = ready, line
	a.mu.Unlock()
	if changed {
		if ready {
			a.log().Info(msg, "reason", reason)
		} else {
			a.log().Warn(msg, "reason", reason)
		}
		if a.Events != nil {
			a.Events.Event(ctx, !ready, reason, fmt.Sprintf("node %s: %s", a.NodeName, msg))
		}
	}
	return line
}

// Ready reports the last state: whether the trust is in place and containerd uses it, and the state's line.
func (a *Agent) Ready() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready, a.reason
}

// HealthHandler serves /readyz (200 while Ready, 503 otherwise, with the state's line) and /healthz (always 200:
// liveness does not depend on trust).
func (a *Agent) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, reason := a.Ready()
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, reason)
	})
	return mux
}

func (a *Agent) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}
