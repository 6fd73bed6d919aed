// Command cluster brings a real single-node Kubernetes v1.37.2 up and down on
// this machine (root needed). Run it from tests/cluster:
//
//	go run ./cmd/cluster up       # build, start, wait for the node to be Ready
//	eval "$(go run ./cmd/cluster env)"
//	go run ./cmd/cluster status
//	go run ./cmd/cluster import image.tar   # into containerd's k8s.io namespace
//	go run ./cmd/cluster down
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	cluster "github.com/connected-registry/connected-registry/tests/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = `usage: cluster COMMAND [flags]

commands:
  up          install the packages, build the binaries, start the cluster and wait until it is Ready
  down        stop everything by PID and remove mounts, iptables rules, route and bridge (idempotent)
  status      print each component's PID and the cluster's health (exit 1 when not healthy)
  env         print the shell exports for kubectl (KUBECONFIG, PATH)
  build       build bin/kube, bin/kubectl and bin/pause into the state directory
  import TAR  import OCI or docker-archive tarballs into containerd's k8s.io namespace

flags (each with an environment twin):
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := cluster.OptionsFromEnv()
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "directory for binaries, PKI, configs, data, PIDs and logs (CLUSTER_STATE_DIR; default "+cluster.DefaultStateDir+")")
	fs.StringVar(&o.Source, "source", o.Source, "directory of the tests/cluster module, to build from (CLUSTER_SOURCE; default the module of the working directory)")
	fs.StringVar(&o.KubeBin, "kube-bin", o.KubeBin, "prebuilt multi-call kube binary; skips its build (CLUSTER_KUBE_BIN)")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "node name (CLUSTER_NODE_NAME; default "+cluster.DefaultNodeName+")")
	fs.StringVar(&o.Bridge, "bridge", o.Bridge, "pod bridge (CLUSTER_BRIDGE; default "+cluster.DefaultBridge+")")
	fs.StringVar(&o.BridgeCIDR, "bridge-cidr", o.BridgeCIDR, "bridge address and pod subnet (CLUSTER_BRIDGE_CIDR; default "+cluster.DefaultBridgeCIDR+")")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", o.ServiceCIDR, "Service ClusterIP range (CLUSTER_SERVICE_CIDR; default "+cluster.DefaultServiceCIDR+")")
	fs.StringVar(&o.ContainerdSocket, "containerd-socket", o.ContainerdSocket, "containerd socket (CLUSTER_CONTAINERD_SOCKET; default "+cluster.DefaultContainerdSocket+")")
	fs.StringVar(&o.CertsDir, "certs-dir", o.CertsDir, "containerd registry config_path (CLUSTER_CERTS_DIR; default "+cluster.DefaultCertsDir+")")
	fs.StringVar(&o.PauseImage, "pause-image", o.PauseImage, "sandbox image name (CLUSTER_PAUSE_IMAGE; default "+cluster.DefaultPauseImage+")")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "bound of each wait of up, e.g. 5m (CLUSTER_TIMEOUT; default 5m0s)")
	fs.BoolVar(&o.KeepData, "keep-data", o.KeepData, "keep the etcd data and pods of the previous run instead of starting empty (CLUSTER_KEEP_DATA=true)")
	fs.BoolVar(&o.SkipInstall, "skip-install", o.SkipInstall, "never run apt-get; fail when packages are missing (CLUSTER_SKIP_INSTALL=true)")
	if len(args) == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	command := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	o.Out = stderr
	if err := o.Complete(); err != nil {
		return err
	}
	switch command {
	case "up":
		return o.Up(ctx)
	case "down":
		return o.Down(ctx)
	case "status":
		return o.Status(ctx, stdout)
	case "env":
		o.Env(stdout)
		return nil
	case "build":
		return o.Build(ctx)
	case "import":
		if fs.NArg() == 0 {
			return errors.New("import: name at least one tarball")
		}
		for _, f := range fs.Args() {
			if err := o.ImportImage(ctx, f); err != nil {
				return err
			}
		}
		return nil
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", command)
	}
}
