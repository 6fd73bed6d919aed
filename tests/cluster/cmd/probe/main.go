// Command probe is a test workload of tests/cluster: from inside a pod it
// calls the API server through the kubernetes Service ClusterIP, trusting
// only the pod's service-account CA, prints the server's version and exits 0.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "probe: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ca, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in %s/ca.crt", saDir)
	}
	host := os.Getenv("KUBERNETES_SERVICE_HOST")
	url := "https://" + net.JoinHostPort(host, os.Getenv("KUBERNETES_SERVICE_PORT")) + "/version"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12},
	}}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var v struct{ GitVersion string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s (%v)", url, resp.Status, err)
	}
	fmt.Printf("%s %s\n", url, v.GitVersion)
	return nil
}
