package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ReasonWarning is the reason of the Event each warning of a check becomes, on the release's Service.
const ReasonWarning = "PreflightWarning"

// maxEventMessage is what the API server keeps of an Event's message.
const maxEventMessage = 1024

// MaxTerminationMessage is the size Kubernetes keeps of a container's termination message.
const MaxTerminationMessage = 4096

// CheckPre points users to the same checks from their workstation: Helm 3 reports a failed preflight Job only as
// "BackoffLimitExceeded", and deletes nothing that would show them these lines.
const CheckPre = "Helm 3 shows only BackoffLimitExceeded: run kubectl connected-registry check --pre with the install's values to see these lines before installing"

// ErrChecksFailed is returned when at least one check fails; the binary then exits 1.
var ErrChecksFailed = errors.New("preflight checks failed")

// Report runs every check and prints one line per check to out, `name: ok|warn|fail: message`. It deletes the
// hook Secret that handed the values over, whatever the verdict. It returns the termination message: a summary,
// then the failures and warnings, cut at a line end to what Kubernetes keeps. The error is ErrChecksFailed when a
// check fails.
func (c *Checker) Report(ctx context.Context, out io.Writer) (string, error) {
	results := c.Run(ctx)
	c.deleteInput(ctx)
	var failed, warned, problems []string
	for _, r := range results {
		fmt.Fprintln(out, r.String())
		switch r.Status {
		case Fail:
			failed = append(failed, r.Check)
			problems = append(problems, r.String())
		case Warn:
			warned = append(warned, r.Check)
			problems = append(problems, r.String())
		}
	}
	summary := fmt.Sprintf("preflight: %d checks passed", len(results))
	switch {
	case len(failed) > 0:
		summary = fmt.Sprintf("preflight: %d of %d checks failed (%s); %s", len(failed), len(results), strings.Join(failed, ", "), CheckPre)
	case len(warned) > 0:
		summary = fmt.Sprintf("preflight: %d checks passed, %d with a warning (%s)", len(results), len(warned), strings.Join(warned, ", "))
	}
	msg := terminationMessage(summary, problems)
	c.recordWarnings(ctx, results)
	if len(failed) > 0 {
		return msg, fmt.Errorf("%w: %d of %d (%s); the lines above name each value and its fix; %s", ErrChecksFailed, len(failed), len(results), strings.Join(failed, ", "), CheckPre)
	}
	return msg, nil
}

// deleteInput deletes the hook Secret that handed the values over, once read, whatever the verdict: Helm deletes a
// hook only when every hook of the phase succeeded, and a failed install must not leave a private key behind.
func (c *Checker) deleteInput(ctx context.Context) {
	name := c.Config.InputSecret
	if name == "" {
		return
	}
	err := c.Client.CoreV1().Secrets(c.Config.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		c.log().Warn("cannot delete the hook Secret that handed the values over; Helm deletes it on the next install", "secret", name, "err", err)
	}
}

// terminationMessage is the summary and the problems, cut to what Kubernetes keeps, at a line end.
func terminationMessage(summary string, problems []string) string {
	msg := summary + "\n"
	for _, p := range problems {
		if len(msg)+len(p)+1 > MaxTerminationMessage {
			const more = "…\n"
			if len(msg)+len(more) <= MaxTerminationMessage {
				msg += more
			}
			break
		}
		msg += p + "\n"
	}
	return msg
}

// recordWarnings makes each warning an Event on the release's Service: Helm deletes a successful hook Job and its
// log, and `kubectl get events` (and the NOTES, which point there) is where users look. The Service may not exist
// yet on install: the Event names it all the same. A failure to record is only logged.
func (c *Checker) recordWarnings(ctx context.Context, results []Result) {
	cfg := c.Config
	if cfg.Service == "" {
		return
	}
	var uid string
	if svc, err := c.Client.CoreV1().Services(cfg.Namespace).Get(ctx, cfg.Service, metav1.GetOptions{}); err == nil {
		uid = string(svc.UID)
	}
	now := metav1.NewTime(c.now())
	for _, r := range results {
		if r.Status != Warn {
			continue
		}
		msg := r.String()
		if len(msg) > maxEventMessage {
			msg = msg[:maxEventMessage-len("…")] + "…"
		}
		ev := &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{GenerateName: cfg.Service + ".preflight.", Namespace: cfg.Namespace},
			InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: cfg.Namespace, Name: cfg.Service,
				UID: types.UID(uid)},
			Reason: ReasonWarning, Message: msg, Type: corev1.EventTypeWarning,
			Source:         corev1.EventSource{Component: "connected-registry-preflight"},
			FirstTimestamp: now, LastTimestamp: now, Count: 1,
			ReportingController: "connected-registry.io/preflight", ReportingInstance: cfg.Service,
		}
		if _, err := c.Client.CoreV1().Events(cfg.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			c.log().Warn("cannot record the warning as an Event", "check", r.Check, "err", err)
		}
	}
}
