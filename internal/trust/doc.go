// Package trust is trust distribution: it gives every node's containerd the registry's CA, and takes it away
// on uninstall.
//
//   - Entry writes (and later removes) exactly one certs.d host entry on a node: ca.crt, hosts.toml and a
//     marker naming what it wrote. Detect tells whether containerd on the node reads that certs.d directory.
//   - Agent is the node agent, one per node (the trust-agent DaemonSet): it keeps the entry equal to the trust
//     bundle the registry pod publishes (package trust/bundle), acknowledges each bundle it installed, and
//     reports through its readiness and Events (PodEvents).
//   - Cleanup is the chart's post-delete hook: one short pod per node runs Remove (the trust-remove command)
//     there, then the Secrets Helm does not own are deleted.
package trust
