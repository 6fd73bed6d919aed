package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// AzuriteAccount and AzuriteKey are Azurite's published development account and key (not a secret: the same in
// every copy of Azurite, documented by Microsoft).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// ObjectStore is a running object store for the storage tests: Azurite (Azure Blob) or MinIO (S3).
type ObjectStore struct {
	// Endpoint is the store's base URL: http://host:port/<account> for Azurite, http://host:port for MinIO.
	Endpoint string
	// Account and Key are the Azure account and key, or the S3 access key and secret key.
	Account, Key string
	cmd          *exec.Cmd
	done         chan struct{}
}

// AzuriteBin is the azurite-blob launcher ci/azurite.sh installs, from the repository root.
func AzuriteBin(root string) string {
	return filepath.Join(root, "bin", "azurite", "node_modules", ".bin", "azurite-blob")
}

// MinIOBin is the MinIO server ci/s3-store.sh builds, from the repository root.
func MinIOBin(root string) string { return filepath.Join(root, "bin", "minio") }

// StartAzurite runs Azurite's blob service from bin on host (a free port of it), keeping its data in dir, and
// waits until it answers.
func StartAzurite(ctx context.Context, bin, host, dir string, log io.Writer) (*ObjectStore, error) {
	port, err := freePort(host)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--blobHost", host, "--blobPort", strconv.Itoa(port), "--location", dir,
		"--skipApiVersionCheck", "--disableTelemetry", "--silent")
	s := &ObjectStore{
		Endpoint: fmt.Sprintf("http://%s/%s", net.JoinHostPort(host, strconv.Itoa(port)), AzuriteAccount),
		Account:  AzuriteAccount, Key: AzuriteKey,
	}
	// Azurite answers 400 to an unsigned request on the account: enough to know it listens.
	return s, s.start(ctx, cmd, log, s.Endpoint+"?comp=list", 90*time.Second)
}

// StartMinIO runs a MinIO server from bin on host (free ports of it), keeping its data in dir, with the given
// keys, and waits until it is healthy. Update checks and telemetry are off: it sends nothing off the host.
func StartMinIO(ctx context.Context, bin, host, dir, accessKey, secretKey string, log io.Writer) (*ObjectStore, error) {
	port, err := freePort(host)
	if err != nil {
		return nil, err
	}
	console, err := freePort(host)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", net.JoinHostPort(host, strconv.Itoa(console)), dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+accessKey, "MINIO_ROOT_PASSWORD="+secretKey,
		"MINIO_UPDATE=off", "MINIO_CALLHOME_ENABLE=off", "MINIO_BROWSER=off", "HOME="+dir)
	s := &ObjectStore{Endpoint: "http://" + addr, Account: accessKey, Key: secretKey}
	return s, s.start(ctx, cmd, log, s.Endpoint+"/minio/health/live", 60*time.Second)
}

func (s *ObjectStore) start(ctx context.Context, cmd *exec.Cmd, log io.Writer, ready string, wait time.Duration) error {
	if log != nil {
		cmd.Stdout, cmd.Stderr = log, log
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.done) }()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(wait)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited during start-up", cmd.Path)
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		default:
		}
		resp, err := client.Get(ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("%s at %s not ready after %s: %w", cmd.Path, ready, wait, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop kills the store (and the processes it started) and waits for it to exit.
func (s *ObjectStore) Stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// RandomKey is a random hex string of n bytes, for test credentials.
func RandomKey(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
