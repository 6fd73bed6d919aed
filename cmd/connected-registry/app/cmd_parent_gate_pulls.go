package app

import (
	"context"
	"net/http"
	"time"

	"github.com/connected-registry/connected-registry/internal/evict"
)

// gatePulls are the parent gate's flags for the bounded cache: where it keeps the registry's pull records.
type gatePulls struct {
	KubeOptions
	// PullsConfigMap keeps the pull records; empty: the gate takes no notifications.
	PullsConfigMap string
	// PullsFlush is how often the records are written.
	PullsFlush time.Duration

	recorder *evict.Recorder
}

func (g *gatePulls) addPullFlags(fs *FlagSet) {
	const p = "CONNECTED_REGISTRY_GATE_"
	g.addFlags(fs, "GATE", requestTimeoutHelp)
	fs.StringVar(&g.PullsConfigMap, "pulls-configmap", p+"PULLS_CONFIGMAP", "",
		"ConfigMap of the release namespace to keep the last pull of each manifest and tag in, from the registry's notifications to "+evict.EventsPath+" (registry.cache.maxSize); empty takes none")
	fs.DurationVar(&g.PullsFlush, "pulls-flush", p+"PULLS_FLUSH", time.Minute, "how often the pull records are written to --pulls-configmap")
}

func (g *gatePulls) completePulls() error {
	if g.PullsConfigMap == "" {
		return nil
	}
	if g.PullsFlush <= 0 {
		return usageErrorf("--pulls-flush must be positive, got %s", g.PullsFlush)
	}
	if err := g.complete(); err != nil {
		return err
	}
	g.recorder = &evict.Recorder{
		Store: &evict.ConfigMapPullStore{Client: g.Client, Namespace: g.Namespace, Name: g.PullsConfigMap},
		Log:   g.Log,
	}
	return nil
}

// withPulls routes the registry's notifications to the recorder, everything else to h, and starts writing the
// records until ctx ends.
func (g *gatePulls) withPulls(ctx context.Context, h http.Handler) http.Handler {
	if g.recorder == nil {
		return h
	}
	go g.recorder.Run(ctx, g.PullsFlush)
	mux := http.NewServeMux()
	mux.Handle(evict.EventsPath, g.recorder)
	mux.Handle("/", h)
	return mux
}
