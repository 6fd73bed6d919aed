package check

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/preflight"
	"github.com/connected-registry/connected-registry/internal/presync"
	"github.com/connected-registry/connected-registry/internal/reloader"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

// maxNamed is how many nodes or warnings a line names before it says "and N more".
const maxNamed = 5

// nodeTrust: every node the trust agents' DaemonSet selects runs a ready agent, whose Lease acknowledges the CA
// bundle published now (the per-node protocol of package bundle, which the tls-reloader also waits on). An agent
// is ready only while its node's entry holds the CA and containerd uses it.
func (c *Checker) nodeTrust(ctx context.Context) Line {
	t := c.target
	if t.daemonSet == "" {
		return line(CheckNodeTrust, OK, "", "trust distribution is off (trustDistribution.enabled=false): the nodes trust the registry's CA by the site's own means")
	}
	ds, err := c.Client.AppsV1().DaemonSets(c.Namespace).Get(ctx, t.daemonSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return line(CheckNodeTrust, Fail, "run helm upgrade to restore it, or remove trust distribution with trustDistribution.enabled=false",
			"the trust agents' DaemonSet %s/%s does not exist", c.Namespace, t.daemonSet)
	}
	if err != nil {
		return line(CheckNodeTrust, Fail, "this check needs get on DaemonSets in namespace "+c.Namespace, "reading DaemonSet %s: %v", t.daemonSet, err)
	}
	published, legacy, err := (bundle.ConfigMap{Client: c.Client, Namespace: c.Namespace, Name: t.bundle}).Status(ctx)
	if err != nil || len(published) == 0 {
		why := "it holds no CA yet"
		if err != nil {
			why = err.Error()
		}
		return line(CheckNodeTrust, Fail, "the tls-reloader publishes the CA when the registry pod starts: see registry-ready", "no CA bundle is published in ConfigMap %s: %s", t.bundle, why)
	}
	fp := bundle.Fingerprint(published)
	acks, err := (bundle.Acks{Client: c.Client, Namespace: c.Namespace, Release: c.Release}).List(ctx)
	if err != nil {
		return line(CheckNodeTrust, Fail, "this check needs list on Leases in namespace "+c.Namespace, "%v", err)
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return line(CheckNodeTrust, Fail, "run helm upgrade to restore the DaemonSet", "DaemonSet %s has an invalid selector: %v", t.daemonSet, err)
	}
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return line(CheckNodeTrust, Fail, "this check needs list on Pods in namespace "+c.Namespace, "listing the trust agents' pods: %v", err)
	}
	want := int(ds.Status.DesiredNumberScheduled)
	var problems []string
	hintPod := ""
	nodes := 0
	for _, p := range pods.Items {
		node := p.Spec.NodeName
		if node == "" || p.DeletionTimestamp != nil {
			continue
		}
		nodes++
		acked, found := acks[node]
		if !found {
			acked = legacy[bundle.AckAnnotation(node)]
		}
		switch {
		case acked == "":
			problems = append(problems, fmt.Sprintf("node %s has not acknowledged any CA (no Lease %s)", node, (bundle.Acks{Release: c.Release}).Name(node)))
		case acked != fp:
			problems = append(problems, fmt.Sprintf("node %s acknowledged CA %s, not the current %s", node, acked, fp))
		case !podReady(&p):
			problems = append(problems, fmt.Sprintf("node %s: its agent %s is not ready%s", node, p.Name, c.lastEventOf(ctx, p.Name)))
		default:
			continue
		}
		if hintPod == "" {
			hintPod = p.Name
		}
	}
	if nodes < want {
		problems = append(problems, fmt.Sprintf("%d of %d selected nodes run an agent", nodes, want))
	}
	if len(problems) > 0 {
		hint := fmt.Sprintf("the registry is not trusted there, so pulls on those nodes fail; see kubectl -n %s describe pod %s and its log: the agent writes the entry every few seconds and acknowledges within a minute", c.Namespace, hintPod)
		if hintPod == "" {
			hint = fmt.Sprintf("see kubectl -n %s describe daemonset %s: a node may not admit the agent (taints, Pod Security)", c.Namespace, t.daemonSet)
		}
		return line(CheckNodeTrust, Fail, hint, "%d of %d nodes trust CA %s: %s", nodes-countNodeProblems(problems), want, fp, named(problems))
	}
	return line(CheckNodeTrust, OK, "", "all %d selected nodes acknowledged CA %s and their agents are ready", want, fp)
}

// countNodeProblems counts the problems that are about one node each.
func countNodeProblems(problems []string) int {
	n := 0
	for _, p := range problems {
		if strings.HasPrefix(p, "node ") {
			n++
		}
	}
	return n
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// lastEventOf is ": <message of the latest warning Event about the pod>", or "".
func (c *Checker) lastEventOf(ctx context.Context, pod string) string {
	evs, err := c.Client.CoreV1().Events(c.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		return ""
	}
	var last *corev1.Event
	for i := range evs.Items {
		e := &evs.Items[i]
		if e.InvolvedObject.Name != pod || e.Type != corev1.EventTypeWarning {
			continue
		}
		if last == nil || eventTime(e).After(eventTime(last)) {
			last = e
		}
	}
	if last == nil {
		return ""
	}
	return ": " + oneLine(last.Message, 300)
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.FirstTimestamp.Time
}

// named lists at most maxNamed items and counts the rest.
func named(items []string) string {
	if len(items) > maxNamed {
		return strings.Join(items[:maxNamed], "; ") + fmt.Sprintf("; and %d more", len(items)-maxNamed)
	}
	return strings.Join(items, "; ")
}

// sync: the latest run of the pre-sync, from its status ConfigMap (package presync).
func (c *Checker) sync(ctx context.Context) Line {
	name := c.target.deployment.Name + "-sync-status"
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return line(CheckSync, OK, "", "pre-sync is off (sync.enabled=false): the registry fetches what nodes pull, when they pull it")
	}
	if err != nil {
		return line(CheckSync, Fail, "this check needs get on ConfigMaps in namespace "+c.Namespace, "reading ConfigMap %s: %v", name, err)
	}
	st, err := presync.ParseStatus([]byte(cm.Data[presync.StatusKey]))
	if err != nil {
		return line(CheckSync, Fail, "the sync rewrites it on its next run", "ConfigMap %s: %v", name, err)
	}
	logs := fmt.Sprintf("kubectl -n %s get configmap %s -o jsonpath='{.data.summary}'; the runs: kubectl -n %s get jobs -l app.kubernetes.io/instance=%s", c.Namespace, name, c.Namespace, c.Release)
	next := ""
	if st.NextRun != nil {
		next = "; next run " + st.NextRun.UTC().Format(time.RFC3339)
	}
	if st.Run.Started.IsZero() {
		return line(CheckSync, Warn, "wait for the schedule ("+st.Schedule+"), or start a run: kubectl -n "+c.Namespace+" create job --from=cronjob/"+c.target.deployment.Name+"-sync first-sync",
			"no sync has run yet%s", next)
	}
	var bad []string
	for _, r := range st.Repositories {
		switch {
		case r.Error != "":
			bad = append(bad, r.Name+": "+r.Error)
		case len(r.Failed) > 0:
			bad = append(bad, fmt.Sprintf("%s: %d tags failed", r.Name, len(r.Failed)))
		}
	}
	run := fmt.Sprintf("last run %s %s: %d tags synced, %d unchanged, %d failed, %d pending, %s fetched",
		st.Run.Started.UTC().Format(time.RFC3339), st.Run.Result, st.Run.TagsSynced, st.Run.TagsUnchanged, st.Run.TagsFailed, st.Run.TagsPending, presync.Bytes(st.Run.BytesFetched))
	switch st.Run.Result {
	case presync.ResultComplete, presync.ResultRunning:
		return line(CheckSync, OK, "", "%s%s", run, next)
	case presync.ResultFailed:
		return line(CheckSync, Fail, logs, "%s (%s)%s", run, oneLine(st.Run.Message+" "+named(bad), 600), next)
	case presync.ResultWindowEnded:
		return line(CheckSync, Warn, "widen sync.window, raise sync.bandwidth, or hold less; "+logs, "%s%s", run, next)
	}
	return line(CheckSync, Warn, logs, "%s: %s%s", run, oneLine(named(bad), 600), next)
}

// warnedReasons are the Events that stand for warnings nobody else shows: the preflight's (Helm deletes its
// successful Job and log), the tls-reloader's refusal of a certificate, and an agent whose containerd ignores the
// entry it wrote.
var warnedReasons = map[string]string{
	preflight.ReasonWarning:  "the preflight warned at the last install or upgrade: fix the value it names, then helm upgrade",
	reloader.ReasonRefused:   "the registry keeps serving its previous certificate: fix the TLS Secret (see certificate)",
	"ContainerdIgnoresTrust": "containerd on that node does not read certs.d: set config_path as the message says, then restart containerd",
}

// warnings: one line per distinct warning Event of those kinds in the release's namespace, newest first.
func (c *Checker) warnings(ctx context.Context) []Line {
	evs, err := c.Client.CoreV1().Events(c.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "type=" + corev1.EventTypeWarning})
	if err != nil {
		return []Line{line(CheckWarnings, Warn, "this check needs list on Events in namespace "+c.Namespace, "cannot read the warnings recorded about the release: %v", err)}
	}
	prefix := c.target.deployment.Name
	var found []*corev1.Event
	for i := range evs.Items {
		e := &evs.Items[i]
		if _, ok := warnedReasons[e.Reason]; !ok || e.Type != corev1.EventTypeWarning || !strings.HasPrefix(e.InvolvedObject.Name, prefix) {
			continue
		}
		found = append(found, e)
	}
	sort.SliceStable(found, func(i, j int) bool { return eventTime(found[i]).After(eventTime(found[j])) })
	var out []Line
	seen := map[string]bool{}
	for _, e := range found {
		msg := oneLine(e.Message, 1000)
		if seen[msg] {
			continue
		}
		seen[msg] = true
		if len(out) == maxNamed {
			out = append(out, line(CheckWarnings, Warn, fmt.Sprintf("kubectl -n %s get events --field-selector type=Warning", c.Namespace), "and more warnings"))
			break
		}
		out = append(out, line(CheckWarnings, Warn, warnedReasons[e.Reason], "%s %s/%s: %s", e.Reason, strings.ToLower(e.InvolvedObject.Kind), e.InvolvedObject.Name, msg))
	}
	return out
}

// access: who may pull. Anonymous pulls open to the whole cluster network are the default (audit finding 5), so
// they are a warning until client tokens or a NetworkPolicy narrow them; htpasswd lets every user pull everything.
func (c *Checker) access(ctx context.Context) Line {
	spec := c.target.deployment.Spec.Template.Spec
	for _, ct := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if ct.Name == "token-server" {
			return line(CheckAccess, OK, "", "pulls need a client token, scoped to repositories (clientTokens.enabled)")
		}
	}
	auth := "pulls are anonymous"
	for _, v := range spec.Volumes {
		if v.Name == "client-auth" {
			auth = "pulls need htpasswd credentials (registry.clientAuthSecret), which let every user pull every repository"
		}
	}
	pols, err := c.Client.NetworkingV1().NetworkPolicies(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + c.Release})
	if err == nil && len(pols.Items) > 0 {
		return line(CheckAccess, OK, "", "%s; NetworkPolicy %s admits only the cluster's pods and nodes", auth, pols.Items[0].Name)
	}
	return line(CheckAccess, Warn, "set clientTokens.enabled=true for per-repository client tokens, or networkPolicy.enabled=true to admit only the cluster's pods and nodes",
		"%s, and anything that reaches %s:443 in the cluster network may ask, /v2/_catalog included", auth, c.target.clusterIP)
}
