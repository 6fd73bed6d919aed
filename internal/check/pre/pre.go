// Package pre prepares `kubectl connected-registry check --pre`: it reads the values exactly as Helm does (-f,
// --set, --set-string, --set-file, --set-json, and the Azure extension's protected-settings JSON, which is a
// values file), renders the chart with them as Helm would for this cluster, and takes from the rendered preflight
// hook what the hook itself would get: the Job's args, parsed by the hook's own flags (preflight.AddFlags), and the
// hook Secret's data. The checks then run with package preflight's code, so the verdicts and messages are the
// hook's.
//
// It links the Helm SDK, so only the workstation binary imports it; the in-cluster binary stays free of Helm.
package pre

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/connected-registry/connected-registry/internal/cli"
	"github.com/connected-registry/connected-registry/internal/preflight"
)

// Values are the value sources of an install, in Helm's order: files, then --set-json, --set, --set-string,
// --set-file.
type Values struct {
	Files, Set, SetString, SetFile, SetJSON []string
}

// Merge merges the sources as the helm CLI does.
func (v Values) Merge() (map[string]any, error) {
	o := values.Options{ValueFiles: v.Files, Values: v.Set, StringValues: v.SetString, FileValues: v.SetFile, JSONValues: v.SetJSON}
	return o.MergeValues(getter.Providers{})
}

// Render selects the chart, the release and the cluster's capabilities of one render.
type Render struct {
	// Chart is a chart directory or packaged .tgz.
	Chart     string
	Release   string
	Namespace string
	// IsUpgrade renders as helm upgrade would, for a release that exists.
	IsUpgrade bool
	// KubeVersion and APIVersions are the cluster's (action.GetVersionSet); empty uses Helm's defaults.
	KubeVersion string
	APIVersions []string
}

// Hook is what the preflight hook would get.
type Hook struct {
	Config preflight.Config
	// Input is the hook Secret's data; an empty map when the chart renders no hook Secret.
	Input map[string]string
}

// ErrNoPreflight is returned when the rendered chart holds no preflight Job.
var ErrNoPreflight = errors.New("the rendered chart holds no preflight Job")

// Preflight renders the chart with vals and returns what its preflight hook would get. A render-time failure
// (the chart's own checks of the values, the values schema) comes back as Helm gives it.
func (r Render) Preflight(vals map[string]any) (*Hook, error) {
	c, err := loader.Load(r.Chart)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", r.Chart, err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = r.Release
	install.Namespace = r.Namespace
	install.IsUpgrade = r.IsUpgrade
	install.APIVersions = r.APIVersions
	if r.KubeVersion != "" {
		kv, err := chartutil.ParseKubeVersion(r.KubeVersion)
		if err != nil {
			return nil, err
		}
		install.KubeVersion = kv
	}
	rel, err := install.Run(c, vals)
	if err != nil {
		return nil, err
	}
	return FromRelease(rel)
}

// FromRelease finds the preflight Job and its Secret among a rendered release's hooks and parses them.
func FromRelease(rel *release.Release) (*Hook, error) {
	var job *batchv1.Job
	var secret *corev1.Secret
	docs := []string{}
	for _, h := range rel.Hooks {
		docs = append(docs, h.Manifest)
	}
	for _, m := range releaseutil.SplitManifests(rel.Manifest) {
		docs = append(docs, m)
	}
	for _, d := range docs {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if yaml.Unmarshal([]byte(d), &head) != nil || head.Metadata.Labels["app.kubernetes.io/component"] != "preflight" {
			continue
		}
		switch head.Kind {
		case "Job":
			job = &batchv1.Job{}
			if err := yaml.Unmarshal([]byte(d), job); err != nil {
				return nil, fmt.Errorf("reading the rendered preflight Job: %w", err)
			}
		case "Secret":
			secret = &corev1.Secret{}
			if err := yaml.Unmarshal([]byte(d), secret); err != nil {
				return nil, fmt.Errorf("reading the rendered preflight Secret: %w", err)
			}
		}
	}
	if job == nil {
		return nil, ErrNoPreflight
	}
	var args []string
	for _, ct := range job.Spec.Template.Spec.Containers {
		if ct.Name == "preflight" {
			args = ct.Args
		}
	}
	cfg, err := ParseArgs(args)
	if err != nil {
		return nil, err
	}
	h := &Hook{Config: cfg, Input: map[string]string{}}
	if secret != nil {
		for k, v := range secret.StringData {
			h.Input[k] = v
		}
		for k, v := range secret.Data {
			h.Input[k] = string(v)
		}
	}
	return h, nil
}

// ParseArgs parses the preflight Job's args (`preflight --flag=value …`) with the hook's own flags. The flags of
// the hook's process (namespace, kubeconfig, timeout, log level, termination log) are read and set aside, except
// the namespace, which the Config carries.
func ParseArgs(args []string) (preflight.Config, error) {
	var cfg preflight.Config
	if len(args) == 0 || args[0] != "preflight" {
		return cfg, fmt.Errorf("the rendered preflight Job does not run the preflight command (args %q)", strings.Join(args, " "))
	}
	fs := cli.NewFlagSet("preflight", func(string) (string, bool) { return "", false }, io.Discard)
	preflight.AddFlags(fs, &cfg)
	var ignored string
	for _, name := range []string{"kubeconfig", "timeout", "log-level", "termination-log"} {
		fs.StringVar(&ignored, name, "", "", "")
	}
	fs.StringVar(&cfg.Namespace, "namespace", "", "", "")
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, fmt.Errorf("reading the rendered preflight Job's args: %w", err)
	}
	return cfg, nil
}
