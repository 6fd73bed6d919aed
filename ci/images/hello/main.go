// Command hello is the end-to-end tests' workload (image ghcr.io/connected-registry/testdata/hello:v1): it
// prints "hello from <GOARCH>" and exits 0, proving that a pod pulled its image and ran it.
package main

import (
	"fmt"
	"runtime"
)

func main() {
	fmt.Println(greeting())
}

func greeting() string {
	return "hello from " + runtime.GOARCH
}
