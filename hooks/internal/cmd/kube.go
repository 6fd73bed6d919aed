package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Clock tells the time; tests pass a fixed one. k8s.io/utils/clock.PassiveClock satisfies it.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// serviceAccountNamespace is where Kubernetes mounts the pod's namespace with its API token.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// KubeOptions are the flags every command that talks to the API server shares.
type KubeOptions struct {
	// Namespace of the release; empty reads the pod's own namespace.
	Namespace string
	// Kubeconfig is a kubeconfig file; empty uses the in-cluster service account.
	Kubeconfig string
	// Timeout bounds the whole command.
	Timeout time.Duration
	// LogLevel is error, warn, info or debug; logs go to standard error.
	LogLevel string

	// Client talks to the API server; tests set a fake one, Complete builds it otherwise.
	Client kubernetes.Interface
	// Clock defaults to the real time.
	Clock Clock
	// LogOut receives the logs; standard error of the command.
	LogOut io.Writer

	log *slog.Logger
}

func (k *KubeOptions) addFlags(fs *FlagSet, component string) {
	fs.StringVar(&k.Namespace, "namespace", "CONNECTED_REGISTRY_NAMESPACE", "",
		"namespace of the release; empty reads the pod's own namespace from "+serviceAccountNamespace)
	fs.StringVar(&k.Kubeconfig, "kubeconfig", "KUBECONFIG", "",
		"kubeconfig file to reach the API server with; empty uses the pod's service account")
	fs.DurationVar(&k.Timeout, "timeout", "CONNECTED_REGISTRY_"+component+"_TIMEOUT", time.Minute,
		"give up after this long (Go duration, like 30s or 2m); keep it below the Job's activeDeadlineSeconds")
	fs.StringVar(&k.LogLevel, "log-level", "CONNECTED_REGISTRY_LOG_LEVEL", "info",
		"log level on standard error: error, warn, info or debug")
}

// complete fills in the namespace, the logger, the clock and the client.
func (k *KubeOptions) complete(userAgent string) error {
	if err := k.completeLogger(); err != nil {
		return err
	}
	if k.Timeout <= 0 {
		return usageErrorf("--timeout %s must be positive", k.Timeout)
	}
	if k.Clock == nil {
		k.Clock = realClock{}
	}
	return k.completeClient(userAgent)
}

// completeLogger builds the logger from LogLevel and LogOut.
func (k *KubeOptions) completeLogger() error {
	if k.LogOut == nil {
		k.LogOut = io.Discard
	}
	log, err := newLogger(k.LogLevel, k.LogOut)
	k.log = log
	return err
}

// newLogger logs to out from level on: error, warn, info (or empty) or debug.
func newLogger(level string, out io.Writer) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "error":
		l = slog.LevelError
	case "warn", "warning":
		l = slog.LevelWarn
	case "info", "":
		l = slog.LevelInfo
	case "debug":
		l = slog.LevelDebug
	default:
		return nil, usageErrorf("--log-level %q is not error, warn, info or debug", level)
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: l})), nil
}

// completeClient fills in the namespace and the client.
func (k *KubeOptions) completeClient(userAgent string) error {
	if k.Namespace == "" {
		b, err := os.ReadFile(serviceAccountNamespace)
		if err != nil {
			return usageErrorf("--namespace is empty and the pod's namespace cannot be read (%v): give --namespace", err)
		}
		k.Namespace = strings.TrimSpace(string(b))
	}
	if k.Client != nil {
		return nil
	}
	var cfg *rest.Config
	var err error
	if k.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return usageErrorf("not running in a pod and no --kubeconfig given: give --kubeconfig (or KUBECONFIG) to run outside the cluster")
		}
	}
	if err != nil {
		return fmt.Errorf("configuring the API client: %w", err)
	}
	cfg.UserAgent = "connected-registry-hooks/" + userAgent
	cfg.Timeout = k.Timeout
	if k.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("configuring the API client: %w", err)
	}
	return nil
}

func (k *KubeOptions) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, k.Timeout)
}
