// Command cripull pulls an image through a containerd's CRI image service, as the kubelet does: containerd
// resolves the registry with its own CRI registry configuration (config_path, hosts.toml, ca), which `ctr pull`
// does not read. It prints the image's id and exits 0, or prints containerd's error and exits 1.
//
//	cripull --address /run/containerd/containerd.sock 10.96.0.50:443/demo/app:v1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "cripull: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("cripull", flag.ContinueOnError)
	address := fs.String("address", "/run/containerd/containerd.sock", "containerd's socket")
	timeout := fs.Duration("timeout", time.Minute, "how long the pull may take")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("give one image reference")
	}
	ref := fs.Arg(0)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+*address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("CRI client for %s: %w", *address, err)
	}
	defer conn.Close()
	resp, err := runtimeapi.NewImageServiceClient(conn).PullImage(ctx, &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: ref},
	})
	if err != nil {
		return fmt.Errorf("pull %s through %s: %w", ref, *address, err)
	}
	fmt.Println(resp.ImageRef)
	return nil
}
