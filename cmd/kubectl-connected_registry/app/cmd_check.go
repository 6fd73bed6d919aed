package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/connected-registry/connected-registry/internal/check"
	"github.com/connected-registry/connected-registry/internal/check/pre"
	"github.com/connected-registry/connected-registry/internal/cli"
	"github.com/connected-registry/connected-registry/internal/preflight"
)

// Defaults, as the README installs the chart.
const (
	DefaultRelease   = "connected-registry"
	DefaultNamespace = "connected-registry"
	DefaultChart     = "chart/connected-registry"
)

// CheckHelmRelease names the line of the release's helm status.
const CheckHelmRelease = "helm-release"

// CheckNamespace names the line of --pre about a namespace that does not exist yet.
const CheckNamespace = "namespace"

// CheckValues names the line of a render that failed in --pre: the chart refused the values.
const CheckValues = "values"

// CheckOptions is the check command.
type CheckOptions struct {
	Namespace, Release     string
	Kubeconfig, Context    string
	Output                 string
	Pre                    bool
	Chart                  string
	Values                 pre.Values
	ProtectedSettings      []string
	ProbeRepository        string
	HelmDriver             string
	Timeout                time.Duration
	Err                    io.Writer
	Client                 kubernetes.Interface
	RESTConfig             *rest.Config
	HelmConfig             *action.Configuration
	clientGetter           genericclioptions.RESTClientGetter
	kubeVersion, apiGroups []string
}

// AddFlags registers the flags.
func (o *CheckOptions) AddFlags(fs *cli.FlagSet) {
	const p = "CONNECTED_REGISTRY_CHECK_"
	fs.StringVar(&o.Namespace, "namespace", p+"NAMESPACE", DefaultNamespace, "the release's namespace")
	fs.StringVar(&o.Namespace, "n", p+"NAMESPACE", DefaultNamespace, "short for --namespace")
	fs.StringVar(&o.Release, "release", p+"RELEASE", DefaultRelease, "the Helm release's name")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "KUBECONFIG", "", "kubeconfig file; empty uses kubectl's rules (KUBECONFIG, ~/.kube/config)")
	fs.StringVar(&o.Context, "context", p+"CONTEXT", "", "kubeconfig context; empty is the current one")
	fs.StringVar(&o.Output, "output", p+"OUTPUT", "text", "text, or json: {\"checks\":[{check,status,message,hint}],\"success\":bool}")
	fs.StringVar(&o.Output, "o", p+"OUTPUT", "text", "short for --output")
	fs.BoolVar(&o.Pre, "pre", p+"PRE", false, "before install or upgrade: run the chart's preflight checks with the values below")
	fs.StringVar(&o.Chart, "chart", p+"CHART", DefaultChart, "with --pre: the chart, a directory or packaged .tgz, as given to helm install")
	fs.StringsVar(&o.Values.Files, "values", p+"VALUES", "with --pre: a values file, as helm's -f")
	fs.StringsVar(&o.Values.Files, "f", p+"VALUES", "short for --values")
	fs.StringsVar(&o.Values.Set, "set", p+"SET", "with --pre: key=value, as helm's --set")
	fs.StringsVar(&o.Values.SetString, "set-string", p+"SET_STRING", "with --pre: key=value, as helm's --set-string")
	fs.StringsVar(&o.Values.SetFile, "set-file", p+"SET_FILE", "with --pre: key=path, as helm's --set-file")
	fs.StringsVar(&o.Values.SetJSON, "set-json", p+"SET_JSON", "with --pre: key=json, as helm's --set-json")
	fs.StringsVar(&o.ProtectedSettings, "protected-settings", p+"PROTECTED_SETTINGS",
		"with --pre: the Azure extension's protected-settings JSON file (its flat keys, like \"tls.key\"), read after the values files")
	fs.StringVar(&o.ProbeRepository, "probe-repository", p+"PROBE_REPOSITORY", "",
		"the repository the parent probe asks the parent about; empty takes the first of sync.repositories, else "+check.DefaultProbeRepository)
	fs.StringVar(&o.HelmDriver, "helm-driver", "HELM_DRIVER", "secret", "Helm's storage driver of release records")
	fs.DurationVar(&o.Timeout, "timeout", p+"TIMEOUT", 2*time.Minute, "give up after this long (Go duration)")
}

// Complete validates the options and builds the API clients.
func (o *CheckOptions) Complete() error {
	switch o.Output {
	case "text", "json":
	default:
		return usageErrorf("--output %q is not text or json", o.Output)
	}
	if o.Timeout <= 0 {
		return usageErrorf("--timeout %s must be positive", o.Timeout)
	}
	if o.Release == "" || o.Namespace == "" {
		return usageErrorf("--release and --namespace must not be empty")
	}
	if !o.Pre {
		var given []string
		for name, v := range map[string][]string{"--values": o.Values.Files, "--set": o.Values.Set, "--set-string": o.Values.SetString,
			"--set-file": o.Values.SetFile, "--set-json": o.Values.SetJSON, "--protected-settings": o.ProtectedSettings} {
			if len(v) > 0 {
				given = append(given, name)
			}
		}
		if len(given) > 0 {
			sort.Strings(given)
			return usageErrorf("%s only apply to check --pre; after install, check reads the release as it is", strings.Join(given, ", "))
		}
	}
	if o.Client != nil {
		return nil
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig, flags.Context, flags.Namespace = &o.Kubeconfig, &o.Context, &o.Namespace
	o.clientGetter = flags
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("configuring the API client: %w", err)
	}
	cfg.UserAgent = "kubectl-connected_registry/check"
	o.RESTConfig = cfg
	if o.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("configuring the API client: %w", err)
	}
	o.HelmConfig = &action.Configuration{}
	if err := o.HelmConfig.Init(flags, o.Namespace, o.HelmDriver, func(string, ...any) {}); err != nil {
		return fmt.Errorf("configuring Helm: %w", err)
	}
	return nil
}

// Report is the JSON output.
type Report struct {
	Release   string       `json:"release"`
	Namespace string       `json:"namespace"`
	Pre       bool         `json:"pre"`
	Checks    []check.Line `json:"checks"`
	Success   bool         `json:"success"`
}

// Run runs the checks, prints them, and returns ErrChecksFailed when one fails.
func (o *CheckOptions) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var lines []check.Line
	if o.Pre {
		lines = o.runPre(ctx)
	} else {
		lines = o.runPost(ctx)
	}
	r := Report{Release: o.Release, Namespace: o.Namespace, Pre: o.Pre, Checks: lines, Success: !check.Failed(lines)}
	if o.Output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		what := "after install"
		if o.Pre {
			what = "before install (the preflight hook's checks)"
		}
		fmt.Fprintf(out, "connected-registry release %s in namespace %s, %s\n\n", o.Release, o.Namespace, what)
		for _, l := range lines {
			fmt.Fprintln(out, l.String())
		}
		fmt.Fprintln(out)
		if r.Success {
			fmt.Fprintln(out, "Status check results are ✓")
		} else {
			fmt.Fprintln(out, "Status check results are ×")
		}
	}
	if !r.Success {
		var failed []string
		for _, l := range lines {
			if l.Status == check.Fail {
				failed = append(failed, l.Check)
			}
		}
		return fmt.Errorf("%w: %s", ErrChecksFailed, strings.Join(failed, ", "))
	}
	return nil
}

// runPost checks the installed release.
func (o *CheckOptions) runPost(ctx context.Context) []check.Line {
	var lines []check.Line
	if o.HelmConfig != nil {
		lines = append(lines, o.helmStatus())
	}
	c := &check.Checker{Client: o.Client, Namespace: o.Namespace, Release: o.Release, ProbeRepository: o.ProbeRepository}
	if o.RESTConfig != nil {
		p, err := check.NewProxy(o.RESTConfig)
		if err != nil {
			fmt.Fprintf(o.Err, "warning: %v\n", err)
		} else {
			c.Proxy = p
		}
	}
	return append(lines, c.Run(ctx)...)
}

// helmStatus is the release's helm status as a line.
func (o *CheckOptions) helmStatus() check.Line {
	rel, err := action.NewStatus(o.HelmConfig).Run(o.Release)
	if err != nil {
		return check.Line{Check: CheckHelmRelease, Status: check.Fail, Message: fmt.Sprintf("release %s in namespace %s: %v", o.Release, o.Namespace, err),
			Hint: "list the releases with helm list -A, and give --release and --namespace"}
	}
	return HelmStatusLine(rel)
}

// HelmStatusLine judges a release's status.
func HelmStatusLine(rel *release.Release) check.Line {
	l := check.Line{Check: CheckHelmRelease}
	desc := ""
	if rel.Info != nil {
		desc = rel.Info.Description
	}
	st := release.StatusUnknown
	if rel.Info != nil {
		st = rel.Info.Status
	}
	switch st {
	case release.StatusDeployed:
		l.Status, l.Message = check.OK, fmt.Sprintf("revision %d of chart %s is deployed", rel.Version, chartName(rel))
	case release.StatusPendingInstall, release.StatusPendingUpgrade, release.StatusPendingRollback:
		l.Status, l.Message = check.Warn, fmt.Sprintf("revision %d is %s: %s", rel.Version, st, desc)
		l.Hint = "an install or upgrade is running, or was killed; if none runs, roll back (helm rollback) or upgrade again"
	default:
		l.Status, l.Message = check.Fail, fmt.Sprintf("revision %d is %s: %s", rel.Version, st, desc)
		l.Hint = fmt.Sprintf("see helm history %s -n %s; a failed preflight says why in kubectl connected-registry check --pre with the same values", rel.Name, rel.Namespace)
	}
	return l
}

func chartName(rel *release.Release) string {
	if rel.Chart == nil || rel.Chart.Metadata == nil {
		return "?"
	}
	return rel.Chart.Metadata.Name + "-" + rel.Chart.Metadata.Version
}

// runPre renders the chart with the values and runs the preflight hook's checks from here.
func (o *CheckOptions) runPre(ctx context.Context) []check.Line {
	vals, err := pre.Values{Files: append(append([]string{}, o.Values.Files...), o.ProtectedSettings...), Set: o.Values.Set,
		SetString: o.Values.SetString, SetFile: o.Values.SetFile, SetJSON: o.Values.SetJSON}.Merge()
	if err != nil {
		return []check.Line{{Check: CheckValues, Status: check.Fail, Message: err.Error(), Hint: "helm reads the values the same way: fix the file or expression named"}}
	}
	r := pre.Render{Chart: o.Chart, Release: o.Release, Namespace: o.Namespace}
	if o.HelmConfig != nil {
		if _, err := action.NewStatus(o.HelmConfig).Run(o.Release); err == nil {
			r.IsUpgrade = true
		}
	}
	if dc := o.Client.Discovery(); dc != nil {
		if v, err := dc.ServerVersion(); err == nil {
			r.KubeVersion = v.GitVersion
		}
		if vs, err := action.GetVersionSet(dc); err == nil {
			r.APIVersions = vs
		}
	}
	if _, err := os.Stat(o.Chart); err != nil {
		return []check.Line{{Check: CheckValues, Status: check.Fail, Message: fmt.Sprintf("chart %s: %v", o.Chart, err),
			Hint: "give --chart, the chart as given to helm install (a directory or a packaged .tgz)"}}
	}
	return PreLines(ctx, o.Client, r, vals)
}

// PreLines renders the chart and runs the preflight checks with the hook's own code; a render the chart refuses
// is one failed line with Helm's message.
func PreLines(ctx context.Context, client kubernetes.Interface, r pre.Render, vals map[string]any) []check.Line {
	hook, err := r.Preflight(vals)
	if err != nil {
		return []check.Line{{Check: CheckValues, Status: check.Fail, Message: oneLine(err.Error()),
			Hint: "helm install refuses these values with the same message: fix the value it names"}}
	}
	checker := &preflight.Checker{Client: client, Config: hook.Config, Input: hook.Input}
	var lines []check.Line
	if _, err := client.CoreV1().Namespaces().Get(ctx, r.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		lines = append(lines, check.Line{Check: CheckNamespace, Status: check.Warn,
			Message: fmt.Sprintf("namespace %s does not exist yet: the checks that read it judge a namespace without labels", r.Namespace),
			Hint:    "helm install --create-namespace creates it without Pod Security labels; to label it first, create it and run check --pre again"})
	}
	for _, res := range checker.Run(ctx) {
		l := check.Line{Check: res.Check, Message: res.Message}
		switch res.Status {
		case preflight.OK:
			l.Status = check.OK
		case preflight.Warn:
			l.Status = check.Warn
			l.Hint = "the install goes ahead; the message says what to change"
		default:
			l.Status = check.Fail
			l.Hint = "the preflight hook fails the install with this message: change what it names"
		}
		if res.Check == "parent" && res.Status != preflight.OK {
			l.Hint += "; check --pre asks the parent from this workstation, the hook asks it from the cluster, whose network may differ"
		}
		lines = append(lines, l)
	}
	return lines
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
