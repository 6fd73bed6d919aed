package app

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/connected-registry/connected-registry/internal/pullcheck"
)

// PullCheckOptions is the chart's `helm test` (pullcheck.Check): one pull through the registry as a node makes it.
type PullCheckOptions struct {
	// Registry is the address nodes pull from, <clusterIP>:443.
	Registry string
	// Image is repository:tag under Registry; empty checks that the registry answers.
	Image string
	// CAFile is the published CA bundle, the trust bundle ConfigMap's ca.crt.
	CAFile  string
	Timeout time.Duration

	check pullcheck.Check
}

// AddFlags registers the flags.
func (o *PullCheckOptions) AddFlags(fs *FlagSet) {
	const p = "CONNECTED_REGISTRY_PULL_CHECK_"
	fs.StringVar(&o.Registry, "registry", p+"REGISTRY", "", "the registry as nodes pull from it, <clusterIP>:443 (required)")
	fs.StringVar(&o.Image, "image", p+"IMAGE", "", "repository:tag to pull through the registry (test.image); empty only asks the registry's /v2/")
	fs.StringVar(&o.CAFile, "ca-file", p+"CA_FILE", "", "the CA bundle the release publishes, the only CAs trusted (required)")
	fs.DurationVar(&o.Timeout, "timeout", p+"TIMEOUT", 2*time.Minute, "limit of the whole pull, a cold one from the parent included")
}

// Complete checks the flags and reads the CA bundle.
func (o *PullCheckOptions) Complete() error {
	if o.Registry == "" {
		return usageErrorf("--registry is required: the registry's <clusterIP>:443")
	}
	if o.CAFile == "" {
		return usageErrorf("--ca-file is required: the CA bundle the release publishes")
	}
	pem, err := os.ReadFile(o.CAFile)
	if err != nil {
		return fmt.Errorf("reading the published CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("the published CA bundle %s holds no PEM certificate: the registry pod's tls-reloader has not published its CA yet (is the registry pod running?)", o.CAFile)
	}
	o.check = pullcheck.Check{Registry: o.Registry, Image: o.Image, RootCAs: pool, CASource: "the published CA bundle " + o.CAFile}
	return nil
}

// Run pulls and prints one line.
func (o *PullCheckOptions) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	res, err := o.check.Run(ctx)
	if err != nil {
		return err
	}
	if o.Image == "" {
		_, err = fmt.Fprintf(out, "https://%s/v2/ answers with a certificate the published CA signs (set test.image to pull an image too)\n", o.Registry)
		return err
	}
	_, err = fmt.Fprintf(out, "pulled %s (%s) through the connected registry: %d blobs, %d bytes, each digest verified, in %s\n",
		res.Ref, res.Digest, res.Blobs, res.Bytes, res.Took.Round(time.Millisecond))
	return err
}
