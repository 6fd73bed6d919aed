// Command stagechart copies the chart into a directory with cert-manager's chart under charts/, taken from the
// cert-manager Go module at the pinned version: what `helm dependency build` does when the jetstack repository
// can be reached. It prints the staged chart's path.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

func main() {
	out := flag.String("out", "_out/stage", "directory to stage the chart into")
	flag.Parse()
	dir, err := chartrender.StageChart(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stagechart:", err)
		os.Exit(1)
	}
	fmt.Println(dir)
}
