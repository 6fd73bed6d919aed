package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// serviceAccountNamespace is where Kubernetes mounts the pod's namespace with its API token.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// userAgentPrefix starts the user agent of every API request: connected-registry/<command>.
const userAgentPrefix = "connected-registry/"

// Help texts of --timeout: a hook Job's command gives up as a whole, a long-running command bounds each request.
const (
	jobTimeoutHelp     = "give up after this long (Go duration, like 30s or 2m); keep it below the Job's activeDeadlineSeconds"
	requestTimeoutHelp = "limit of each request to the API server (Go duration, like 30s)"
)

// defaultTimeout is the default of --timeout.
const defaultTimeout = time.Minute

// KubeOptions are the flags every command that talks to the API server shares.
type KubeOptions struct {
	*Common
	// Namespace of the release; empty reads the pod's own namespace.
	Namespace string
	// Kubeconfig is a kubeconfig file; empty uses the in-cluster service account.
	Kubeconfig string
	// Timeout bounds the whole command (hook Jobs) or each request (long-running commands).
	Timeout time.Duration
	// Client talks to the API server; tests set a fake one, Complete builds it otherwise.
	Client kubernetes.Interface
}

// addFlags registers the flags; component names the environment twin of --timeout, timeoutHelp says what the
// timeout bounds.
func (k *KubeOptions) addFlags(fs *FlagSet, component, timeoutHelp string) {
	fs.StringVar(&k.Namespace, "namespace", "CONNECTED_REGISTRY_NAMESPACE", "",
		"namespace of the release; empty reads the pod's own namespace from "+serviceAccountNamespace)
	fs.StringVar(&k.Kubeconfig, "kubeconfig", "KUBECONFIG", "",
		"kubeconfig file to reach the API server with; empty uses the pod's service account")
	fs.DurationVar(&k.Timeout, "timeout", "CONNECTED_REGISTRY_"+component+"_TIMEOUT", defaultTimeout, timeoutHelp)
}

// complete checks the timeout and fills in the namespace and the client.
func (k *KubeOptions) complete() error {
	if k.Timeout <= 0 {
		return usageErrorf("--timeout %s must be positive", k.Timeout)
	}
	return k.completeClient()
}

// completeClient fills in the namespace and the client.
func (k *KubeOptions) completeClient() error {
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
	cfg.UserAgent = userAgentPrefix + k.Command
	cfg.Timeout = k.Timeout
	if k.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("configuring the API client: %w", err)
	}
	return nil
}

// withTimeout bounds ctx by Timeout.
func (k *KubeOptions) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, k.Timeout)
}
