package acrparent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"syscall"
	"time"
)

// process is a running Distribution process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startProcess starts bin with exactly env; it dies with the test process (Pdeathsig), as testenv's parent does.
func startProcess(bin string, args, env []string, out io.Writer) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// waitHTTP polls url until it answers anything (Distribution's /v2/ answers 401 to a request without a
// token), failing if the process exits first or 30 s pass.
func (p *process) waitHTTP(ctx context.Context, client *http.Client, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			return errors.New("the registry process exited during start-up (see Options.Log)")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering: %w", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill kills the process (by its pid) and waits for it.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}
