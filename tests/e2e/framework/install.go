package framework

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Installer installs and uninstalls a release of the chart in one of the ways users do.
type Installer interface {
	Name() string
	Install(ctx context.Context, e *Env, release, namespace string, valuesFiles []string) error
	Uninstall(ctx context.Context, e *Env, release, namespace string) error
}

// InstallTimeout bounds an install, hooks and readiness included.
const InstallTimeout = 5 * time.Minute

// Installers are the Helm SDK and the helm v3.22.0 and v4.3.1 CLIs built by ci/tools.sh.
func Installers() []Installer {
	return []Installer{sdkInstaller{}, CLIInstaller("helm3"), CLIInstaller("helm4")}
}

// CLIInstaller installs with one of the helm CLIs in ./bin: "helm3" or "helm4".
func CLIInstaller(bin string) Installer { return cliInstaller{bin: bin} }

type cliInstaller struct{ bin string }

func (c cliInstaller) Name() string { return c.bin }

func (c cliInstaller) Install(ctx context.Context, e *Env, release, namespace string, valuesFiles []string) error {
	args := []string{"install", release, e.Chart, "--namespace", namespace, "--create-namespace",
		"--kubeconfig", e.Kubeconfig, "--wait", "--timeout", InstallTimeout.String()}
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	return e.Run(ctx, filepath.Join(e.Root, "bin", c.bin), args...)
}

func (c cliInstaller) Uninstall(ctx context.Context, e *Env, release, namespace string) error {
	return e.Run(ctx, filepath.Join(e.Root, "bin", c.bin), "uninstall", release, "--namespace", namespace,
		"--kubeconfig", e.Kubeconfig, "--wait", "--timeout", InstallTimeout.String())
}

type sdkInstaller struct{}

func (sdkInstaller) Name() string { return "sdk" }

func (sdkInstaller) config(e *Env, namespace string) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &e.Kubeconfig
	flags.Namespace = &namespace
	cfg := new(action.Configuration)
	log := func(format string, v ...any) { fmt.Fprintf(e.Log, "  sdk | "+format+"\n", v...) }
	if err := cfg.Init(flags, namespace, "secret", log); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (s sdkInstaller) Install(ctx context.Context, e *Env, release, namespace string, valuesFiles []string) error {
	cfg, err := s.config(e, namespace)
	if err != nil {
		return err
	}
	chrt, err := loader.Load(e.Chart)
	if err != nil {
		return err
	}
	vals, err := (&values.Options{ValueFiles: valuesFiles}).MergeValues(getter.Providers{})
	if err != nil {
		return err
	}
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace, install.CreateNamespace = release, namespace, true
	install.Wait, install.Timeout = true, InstallTimeout
	_, err = install.RunWithContext(ctx, chrt, vals)
	return err
}

func (s sdkInstaller) Uninstall(ctx context.Context, e *Env, release, namespace string) error {
	cfg, err := s.config(e, namespace)
	if err != nil {
		return err
	}
	u := action.NewUninstall(cfg)
	u.Wait, u.Timeout = true, InstallTimeout
	_, err = u.Run(release)
	return err
}

// HelmCLI is one of the helm CLIs ci/tools.sh builds: "helm3" or "helm4".
type HelmCLI struct{ Bin string }

// Helm runs the CLI against the test cluster and returns its combined output.
func (h HelmCLI) Helm(ctx context.Context, e *Env, args ...string) (string, error) {
	args = append(args, "--kubeconfig", e.Kubeconfig)
	return e.Combined(ctx, filepath.Join(e.Root, "bin", h.Bin), args...)
}
