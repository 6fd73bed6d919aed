// Command kube is a multi-call binary holding the Kubernetes v1.37.2 components
// the test cluster runs: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet, kube-proxy and kubectl.
//
// The component is the first argument ("kube kubelet --config=...") or the
// name the binary is invoked as (a symlink named kubectl).
//
// Build it with the version stamps, or the components report v0.0.0-master:
//
//	go build -ldflags "-X k8s.io/component-base/version.gitVersion=v1.37.2 \
//	  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" ./cmd/kube
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	_ "time/tzdata" // CronJob time zones, as the upstream mains do

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// components maps a component name to its entry point. Each entry point
// receives the arguments after the component name and returns an exit code.
var components = map[string]func(args []string) int{
	"etcd":                    runEtcd,
	"kube-apiserver":          cobraMain(apiserver.NewAPIServerCommand),
	"kube-controller-manager": cobraMain(controllermanager.NewControllerManagerCommand),
	"kube-scheduler":          cobraMain(func() *cobra.Command { return scheduler.NewSchedulerCommand() }),
	"kubelet":                 cobraMain(func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) }),
	"kube-proxy":              cobraMain(proxy.NewProxyCommand),
	"kubectl":                 runKubectl,
}

func main() {
	os.Exit(run(os.Args))
}

func run(argv []string) int {
	name := filepath.Base(argv[0])
	args := argv[1:]
	if _, ok := components[name]; !ok {
		if len(args) == 0 {
			usage(os.Stderr)
			return 2
		}
		name, args = args[0], args[1:]
	}
	main, ok := components[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "kube: unknown component %q\n", name)
		usage(os.Stderr)
		return 2
	}
	// The upstream commands read os.Args in places (kubectl's verbosity):
	// present them with the arguments they would see as their own binary.
	os.Args = append([]string{name}, args...)
	return main(args)
}

func usage(w io.Writer) {
	names := make([]string, 0, len(components))
	for n := range components {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "usage: kube COMPONENT [flags]\ncomponents: %s\n", strings.Join(names, ", "))
}

func cobraMain(newCommand func() *cobra.Command) func([]string) int {
	return func(args []string) int {
		cmd := newCommand()
		cmd.SetArgs(args)
		return cli.Run(cmd)
	}
}

func runKubectl(args []string) int {
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) //nolint:errcheck // as upstream
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	cmd.SetArgs(args)
	if err := cli.RunNoErrOutput(cmd); err != nil {
		kubectlutil.CheckErr(err)
	}
	return 0
}

// runEtcd runs a single-member etcd through go.etcd.io/etcd/server/v3/embed,
// serving plain HTTP on loopback only, until SIGTERM or SIGINT.
func runEtcd(args []string) int {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "default.etcd", "directory holding the etcd data")
	clientURL := fs.String("listen-client-url", "http://127.0.0.1:2379", "URL clients connect to (loopback only)")
	peerURL := fs.String("listen-peer-url", "http://127.0.0.1:2380", "URL of the single peer listener (loopback only)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := serveEtcd(*dataDir, *clientURL, *peerURL); err != nil {
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		return 1
	}
	return 0
}

func serveEtcd(dataDir, clientURL, peerURL string) error {
	cu, err := url.Parse(clientURL)
	if err != nil {
		return fmt.Errorf("parse client URL %q: %w", clientURL, err)
	}
	pu, err := url.Parse(peerURL)
	if err != nil {
		return fmt.Errorf("parse peer URL %q: %w", peerURL, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "default"
	cfg.Dir = dataDir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogOutputs = []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd in %s: %w", dataDir, err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		return errors.New("etcd not ready after 1m0s")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "etcd: %v received, stopping\n", s)
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcd: %w", err)
	}
}
