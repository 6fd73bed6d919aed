// Command stagechart copies the chart into a directory with cert-manager's chart under charts/, taken from the
// cert-manager Go module at the pinned version: what `helm dependency build` does when the jetstack repository
// can be reached. It prints the staged chart's path. With --vendor it instead writes cert-manager's chart into the
// clone's chart/connected-registry/charts/ (ignored by git), so `helm install chart/connected-registry` works.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

func main() {
	out := flag.String("out", "_out/stage", "directory to stage the chart into")
	vendor := flag.Bool("vendor", false, "write cert-manager's chart into chart/connected-registry/charts instead of staging a copy")
	flag.Parse()
	if *vendor {
		dir := chartrender.ChartDir()
		if err := chartrender.VendorCertManager(dir); err != nil {
			fmt.Fprintln(os.Stderr, "stagechart:", err)
			os.Exit(1)
		}
		fmt.Println(dir)
		return
	}
	dir, err := chartrender.StageChart(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stagechart:", err)
		os.Exit(1)
	}
	fmt.Println(dir)
}
