{{/* cr.trustEnabled: "true" when the chart renders the node agent. Argument: the context of cr.values. */}}
{{- define "cr.trustEnabled" -}}
{{- $td := .v.trustDistribution | default dict }}
{{- and (ne (toString $td.enabled) "false") true }}
{{- end }}

{{/* cr.trustHost: the address nodes pull from, <clusterIP>:443, an IPv6 clusterIP in brackets ([fd00::50]:443) as
image references and URLs need it; containerd's certs.d directory is named so. */}}
{{- define "cr.trustHost" -}}
{{- $ip := .v.service.clusterIP }}
{{- if contains ":" $ip }}{{ printf "[%s]:443" $ip }}{{ else }}{{ printf "%s:443" $ip }}{{ end }}
{{- end }}

{{/* cr.trustOwner: what the agent writes into its marker, and the only owner whose entry it removes. */}}
{{- define "cr.trustOwner" -}}
{{- printf "%s/%s" .Release.Namespace .Release.Name }}
{{- end }}

{{/* cr.nodeAgentSecurityContext: root on the host paths it mounts, and nothing more. */}}
{{- define "cr.nodeAgentSecurityContext" -}}
# Root, to write the root-owned certs.d directory on the node; no capability, no privilege escalation.
runAsUser: 0
runAsNonRoot: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
