package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"
)

// CNIBinDir is where Debian's containernetworking-plugins installs the plugins.
const CNIBinDir = "/usr/lib/cni"

const cniNetworkName = "cr-cluster"

var containerdConfig = template.Must(template.New("containerd").Parse(`# Written by tests/cluster: containerd 1.6, config schema v2.
version = 2
root = "{{.Root}}"
state = "{{.State}}"

[grpc]
  address = "{{.Socket}}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.PauseImage}}"
  # The sandbox lacks CAP_SYS_RESOURCE: without this every pod fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBinDir}}"
    conf_dir = "{{.CNIConfDir}}"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    # The real path: a node agent writing hosts.toml here runs unchanged.
    config_path = "{{.CertsDir}}"
`))

var kubeletConfig = template.Must(template.New("kubelet").Parse(`# Written by tests/cluster.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {{.NodeIP}}
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
tlsCertFile: {{.PKI}}/kubelet.crt
tlsPrivateKeyFile: {{.PKI}}/kubelet.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {{.PKI}}/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://{{.Socket}}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# Pod DNS points at loopback: nothing resolves names outside the machine.
clusterDNS:
- 127.0.0.1
clusterDomain: cluster.local
resolvConf: {{.ResolvConf}}
podLogsDirectory: {{.PodLogs}}
serializeImagePulls: false
# Images are imported under several names (ci/images), and some tests also pull the same image by digest from
# the test parent: the default policy (NeverVerifyPreloadedImages) then re-verifies the imported names by pulling
# them from registries this machine cannot reach. Pull credentials are the registry's concern here, not the node's.
imagePullCredentialsVerificationPolicy: NeverVerify
# Images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
maxPods: 110
registerNode: true
`))

var kubeProxyConfig = template.Must(template.New("kube-proxy").Parse(`# Written by tests/cluster.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: {{.NodeName}}
clusterCIDR: {{.PodCIDR}}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses:
- {{.NodeIP}}/32
- 127.0.0.0/8
clientConnection:
  kubeconfig: {{.PKI}}/kube-proxy.kubeconfig
conntrack:
  # Leave the host's conntrack sysctls alone.
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`))

type configData struct {
	Root, State, Socket, PauseImage, CNIBinDir, CNIConfDir, CertsDir string
	NodeIP, NodeName, PKI, ResolvConf, PodLogs, PodCIDR              string
}

func (o *Options) configData() configData {
	return configData{
		Root:       o.path("containerd", "root"),
		State:      o.path("containerd", "state"),
		Socket:     o.ContainerdSocket,
		PauseImage: o.PauseImage,
		CNIBinDir:  CNIBinDir,
		CNIConfDir: o.path("cni", "net.d"),
		CertsDir:   o.CertsDir,
		NodeIP:     o.bridgeIP.String(),
		NodeName:   o.NodeName,
		PKI:        o.path("pki"),
		ResolvConf: o.path("etc", "resolv.conf"),
		PodLogs:    o.path("pod-logs"),
		PodCIDR:    o.bridgeNet.String(),
	}
}

// cniConfig is the bridge network: host-local IPAM on the pod subnet, hairpin
// for pods reaching themselves through a Service, no masquerade, and routes
// only to the pod subnet (connected) and the Service range: no default route.
func (o *Options) cniConfig() ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       cniNetworkName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      o.Bridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": o.path("cni", "ipam"),
					"ranges": [][]map[string]string{{{
						"subnet":  o.bridgeNet.String(),
						"gateway": o.bridgeIP.String(),
					}}},
					"routes": []map[string]string{{"dst": o.serviceNet.String()}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// writeConfigs writes the containerd, CNI, kubelet and kube-proxy
// configuration files and the pods' resolv.conf.
func (o *Options) writeConfigs() error {
	d := o.configData()
	for _, dir := range []string{d.Root, d.State, d.CNIConfDir, o.path("cni", "ipam"), o.path("etc"), d.PodLogs, o.path("kubelet"), o.CertsDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	render := func(t *template.Template, path string) error {
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			return fmt.Errorf("render %s: %w", path, err)
		}
		return os.WriteFile(path, b.Bytes(), 0o644)
	}
	if err := render(containerdConfig, o.path("etc", "containerd.toml")); err != nil {
		return err
	}
	if err := render(kubeletConfig, o.path("etc", "kubelet.yaml")); err != nil {
		return err
	}
	if err := render(kubeProxyConfig, o.path("etc", "kube-proxy.yaml")); err != nil {
		return err
	}
	cni, err := o.cniConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.CNIConfDir, "10-"+cniNetworkName+".conflist"), cni, 0o644); err != nil {
		return err
	}
	// Pods with dnsPolicy Default get this file: loopback only, nothing leaves.
	return os.WriteFile(d.ResolvConf, []byte("nameserver 127.0.0.1\n"), 0o644)
}

// components returns the cluster's processes in start order.
func (o *Options) components() []component {
	kube, pki := o.kube(), o.path("pki")
	p := func(f string) string { return filepath.Join(pki, f) }
	nodeIP := o.bridgeIP.String()
	return []component{
		{name: "containerd", grace: 10 * time.Second, argv: []string{"containerd", "--config", o.path("etc", "containerd.toml")}},
		{name: "etcd", grace: 10 * time.Second, argv: []string{kube, "etcd", "--data-dir", o.path("etcd")}},
		{name: "kube-apiserver", grace: 15 * time.Second, argv: []string{
			kube, "kube-apiserver",
			"--advertise-address=" + nodeIP,
			"--bind-address=0.0.0.0",
			fmt.Sprintf("--secure-port=%d", APIServerPort),
			"--etcd-servers=http://127.0.0.1:2379",
			"--service-cluster-ip-range=" + o.serviceNet.String(),
			"--authorization-mode=Node,RBAC",
			"--allow-privileged=true",
			"--client-ca-file=" + p("ca.crt"),
			"--tls-cert-file=" + p("apiserver.crt"),
			"--tls-private-key-file=" + p("apiserver.key"),
			"--kubelet-client-certificate=" + p("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + p("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + p("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p("sa.pub"),
			"--service-account-signing-key-file=" + p("sa.key"),
			"--shutdown-delay-duration=0s",
			"--shutdown-watch-termination-grace-period=0s",
			"--profiling=false",
		}},
		{name: "kube-controller-manager", grace: 10 * time.Second, argv: []string{
			kube, "kube-controller-manager",
			"--kubeconfig=" + p("kube-controller-manager.kubeconfig"),
			"--authentication-kubeconfig=" + p("kube-controller-manager.kubeconfig"),
			"--authorization-kubeconfig=" + p("kube-controller-manager.kubeconfig"),
			"--bind-address=127.0.0.1",
			"--leader-elect=false",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + p("sa.key"),
			"--root-ca-file=" + p("ca.crt"),
			"--cluster-signing-cert-file=" + p("ca.crt"),
			"--cluster-signing-key-file=" + p("ca.key"),
			"--service-cluster-ip-range=" + o.serviceNet.String(),
			"--profiling=false",
		}},
		{name: "kube-scheduler", grace: 10 * time.Second, argv: []string{
			kube, "kube-scheduler",
			"--kubeconfig=" + p("kube-scheduler.kubeconfig"),
			"--authentication-kubeconfig=" + p("kube-scheduler.kubeconfig"),
			"--authorization-kubeconfig=" + p("kube-scheduler.kubeconfig"),
			"--bind-address=127.0.0.1",
			"--leader-elect=false",
			"--profiling=false",
		}},
		{name: "kubelet", grace: 15 * time.Second, argv: []string{
			kube, "kubelet",
			"--config=" + o.path("etc", "kubelet.yaml"),
			"--kubeconfig=" + p("kubelet.kubeconfig"),
			"--root-dir=" + o.path("kubelet"),
			"--hostname-override=" + o.NodeName,
			"--node-ip=" + nodeIP,
		}},
		{name: "kube-proxy", grace: 10 * time.Second, argv: []string{
			kube, "kube-proxy", "--config=" + o.path("etc", "kube-proxy.yaml"),
		}},
	}
}
