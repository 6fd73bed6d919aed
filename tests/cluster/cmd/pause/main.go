// Command pause is the sandbox ("pause") container of the test cluster's pods:
// it holds the pod's namespaces and sleeps until it is told to stop. With -v
// it prints its version and exits, as the upstream pause does.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause (connected-registry tests/cluster) v1")
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 of the sandbox, let the kernel reap the orphans reparented to us.
	signal.Ignore(syscall.SIGCHLD)
	<-sig
}
