{{- /*
cr.metrics.rules: the alerting rules (metrics.prometheusRule), as the spec of a PrometheusRule and as a rules
file of promtool (tests/chart renders them and runs promtool check rules and promtool test rules on them).
The expressions are scoped to the release's namespace by the labels Prometheus adds to every series.
*/}}
{{- define "cr.metrics.rules" -}}
{{- $pr := .v.metrics.prometheusRule -}}
groups:
  - name: connected-registry
    rules:
      - alert: ConnectedRegistryParentUnreachable
        expr: connected_registry_parent_up == 0
        for: {{ $pr.parentUnreachableFor }}
        labels:
          severity: warning
        annotations:
          summary: The connected registry cannot reach its parent.
          description: >-
            The parent gate of {{ "{{ $labels.namespace }}" }}/{{ "{{ $labels.pod }}" }} has had no answer from the parent
            registry for {{ $pr.parentUnreachableFor }}: cached content is served, anything else fails. Run
            `kubectl connected-registry check` and read the parent-gate container's log.
      - alert: ConnectedRegistrySyncFailing
        expr: connected_registry_sync_consecutive_failures >= {{ $pr.syncFailures }}
        labels:
          severity: warning
        annotations:
          summary: Pre-sync of a repository keeps failing.
          description: >-
            The pre-sync of {{ "{{ $labels.repository }}" }} failed {{ "{{ $value }}" }} runs in a row. Its status ConfigMap
            (the release's -sync-status, key summary) says why.
      - alert: ConnectedRegistryCacheAlmostFull
        expr: 100 * connected_registry_cache_used_bytes / connected_registry_cache_capacity_bytes > {{ $pr.cacheUsedPercent }}
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: The registry's cache volume is more than {{ $pr.cacheUsedPercent }} % full.
          description: >-
            {{ "{{ $value | humanize }}" }} % of the cache volume of {{ "{{ $labels.namespace }}" }}/{{ "{{ $labels.pod }}" }} is in use.
            Grow the PVC (pvc.storageRequest) before pulls of new content fail.
      - alert: ConnectedRegistryNodeWithoutTrust
        expr: >-
          max by (namespace, node) (connected_registry_node_trust == 0 or connected_registry_node_trust_ignored == 1)
          or
          (count by (namespace) (connected_registry_node_trust) < max by (namespace) (connected_registry_trust_nodes_desired))
        for: {{ $pr.nodeWithoutTrustFor }}
        labels:
          severity: warning
        annotations:
          summary: A node does not trust the registry.
          description: >-
            {{ "{{ with $labels.node }}Node {{ . }}{{ else }}A node of the trust agents' DaemonSet, without any acknowledgement,{{ end }}" }}
            lacks the current CA, or containerd ignores its certs.d entry: its pulls through the registry fail. The
            trust-agent pod of the node says why (kubectl describe pod).
      - alert: ConnectedRegistryCertificateExpiring
        expr: connected_registry_certificate_expiry_timestamp_seconds - time() < {{ mul $pr.certificateExpiryDays 86400 }}
        labels:
          severity: warning
        annotations:
          summary: The registry's {{ "{{ $labels.certificate }}" }} certificate expires within {{ $pr.certificateExpiryDays }} days.
          description: >-
            The {{ "{{ $labels.certificate }}" }} certificate of the registry in {{ "{{ $labels.namespace }}" }} expires
            {{ "{{ $value | humanizeDuration }}" }} from now. Renew it, or check why its issuer did not.
{{- end }}
