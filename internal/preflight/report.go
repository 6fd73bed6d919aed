package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxTerminationMessage is the size Kubernetes keeps of a container's termination message.
const MaxTerminationMessage = 4096

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
		summary = fmt.Sprintf("preflight: %d of %d checks failed (%s)", len(failed), len(results), strings.Join(failed, ", "))
	case len(warned) > 0:
		summary = fmt.Sprintf("preflight: %d checks passed, %d with a warning (%s)", len(results), len(warned), strings.Join(warned, ", "))
	}
	msg := terminationMessage(summary, problems)
	if len(failed) > 0 {
		return msg, fmt.Errorf("%w: %d of %d (%s); the lines above name each value and its fix", ErrChecksFailed, len(failed), len(results), strings.Join(failed, ", "))
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
