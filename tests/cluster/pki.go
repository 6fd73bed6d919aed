package cluster

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// renewBefore: a certificate expiring sooner than this is reissued.
	renewBefore = 7 * 24 * time.Hour
)

// certSpec describes a leaf certificate signed by the cluster CA.
type certSpec struct {
	name   string // file base name under pki/
	cn     string
	orgs   []string
	dns    []string
	ips    []net.IP
	server bool
	client bool
}

// certSpecs returns every leaf certificate of the cluster.
func (o *Options) certSpecs() []certSpec {
	loop := net.IPv4(127, 0, 0, 1).To4()
	return []certSpec{
		{
			name: "apiserver", cn: "kube-apiserver", server: true,
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips: []net.IP{loop, o.bridgeIP, o.firstSvcIP},
		},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, client: true},
		{
			name: "kubelet", cn: "system:node:" + o.NodeName, orgs: []string{"system:nodes"}, server: true, client: true,
			dns: []string{o.NodeName, "localhost"}, ips: []net.IP{loop, o.bridgeIP},
		},
		{name: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}, client: true},
		{name: "kube-controller-manager", cn: "system:kube-controller-manager", client: true},
		{name: "kube-scheduler", cn: "system:kube-scheduler", client: true},
		{name: "kube-proxy", cn: "system:kube-proxy", client: true},
	}
}

// kubeconfigSpecs names the kubeconfigs written from client certificates.
var kubeconfigSpecs = []string{"admin", "kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy"}

// ensurePKI creates the CA, the leaf certificates, the service-account key
// pair and the kubeconfigs under pki/. Each file is kept when it is still
// right (signed by the CA, same names, far from expiry) and reissued otherwise.
func (o *Options) ensurePKI(now time.Time) error {
	dir := o.path("pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, caKey, reissuedCA, err := ensureCA(dir, now)
	if err != nil {
		return err
	}
	for _, s := range o.certSpecs() {
		if err := ensureLeaf(dir, s, ca, caKey, reissuedCA, now); err != nil {
			return fmt.Errorf("certificate %s: %w", s.name, err)
		}
	}
	if err := ensureKey(filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")); err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	for _, name := range kubeconfigSpecs {
		if err := o.writeKubeconfig(name); err != nil {
			return fmt.Errorf("kubeconfig %s: %w", name, err)
		}
	}
	return nil
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) }

// ensureCA returns the CA, reusing ca.crt/ca.key when valid for at least a
// year more; reissued reports a new CA (every leaf must then be reissued).
func ensureCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, bool, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if cert, key, err := loadPair(certPath, keyPath); err == nil && cert.IsCA && cert.NotAfter.After(now.Add(leafValidity)) {
		return cert, key, false, nil
	}
	key, err := newKey()
	if err != nil {
		return nil, nil, false, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "cr-cluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, false, err
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return nil, nil, false, err
	}
	return cert, key, true, nil
}

// ensureLeaf writes NAME.crt/NAME.key unless the existing pair still matches spec.
func ensureLeaf(dir string, s certSpec, ca *x509.Certificate, caKey crypto.Signer, force bool, now time.Time) error {
	certPath, keyPath := filepath.Join(dir, s.name+".crt"), filepath.Join(dir, s.name+".key")
	if !force {
		if cert, _, err := loadPair(certPath, keyPath); err == nil && leafStillRight(cert, s, ca, now) == nil {
			return nil
		}
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: s.cn, Organization: s.orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     s.dns,
		IPAddresses:  s.ips,
	}
	if s.server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if s.client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	return writePair(certPath, keyPath, der, key)
}

// leafStillRight returns why cert no longer matches s, or nil.
func leafStillRight(cert *x509.Certificate, s certSpec, ca *x509.Certificate, now time.Time) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("not signed by the cluster CA: %w", err)
	}
	if cert.NotAfter.Before(now.Add(renewBefore)) {
		return fmt.Errorf("expires %s", cert.NotAfter)
	}
	if cert.Subject.CommonName != s.cn || !slices.Equal(cert.Subject.Organization, s.orgs) {
		return fmt.Errorf("subject %q differs", cert.Subject)
	}
	if !slices.Equal(cert.DNSNames, s.dns) {
		return fmt.Errorf("DNS names %v differ from %v", cert.DNSNames, s.dns)
	}
	if !slices.EqualFunc(cert.IPAddresses, s.ips, func(a, b net.IP) bool { return a.Equal(b) }) {
		return fmt.Errorf("IP addresses %v differ from %v", cert.IPAddresses, s.ips)
	}
	return nil
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s holds no PEM block", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("key does not match certificate")
	}
	return cert, key, nil
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// ensureKey writes the service-account signing key and its public half once.
func ensureKey(keyPath, pubPath string) error {
	if kp, err := os.ReadFile(keyPath); err == nil {
		if b, _ := pem.Decode(kp); b != nil {
			if _, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
				if _, err := os.Stat(pubPath); err == nil {
					return nil
				}
			}
		}
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	pder, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o644)
}

// writeKubeconfig writes pki/NAME.kubeconfig for the client certificate NAME,
// against https://127.0.0.1:6443 with the cluster CA embedded.
func (o *Options) writeKubeconfig(name string) error {
	dir := o.path("pki")
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return err
	}
	crt, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(filepath.Join(dir, name+".key"))
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cr-cluster"] = &clientcmdapi.Cluster{
		Server:                   fmt.Sprintf("https://127.0.0.1:%d", APIServerPort),
		CertificateAuthorityData: ca,
	}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: crt, ClientKeyData: key}
	cfg.Contexts["cr-cluster"] = &clientcmdapi.Context{Cluster: "cr-cluster", AuthInfo: name, Namespace: "default"}
	cfg.CurrentContext = "cr-cluster"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, name+".kubeconfig")
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(path, data, 0o600)
}
