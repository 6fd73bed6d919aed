{{/* cr.preflight.name is the name of the preflight hook's Job, ServiceAccount, Role and input Secret. */}}
{{- define "cr.preflight.name" -}}
{{- printf "%s-preflight" (include "cr.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* cr.preflight.clusterName names the cluster-scoped RBAC objects, unique per release and namespace. */}}
{{- define "cr.preflight.clusterName" -}}
{{- printf "%s-%s-preflight" .Release.Namespace (include "cr.fullname" .) }}
{{- end }}

{{/*
cr.preflight.hasInput tells whether the hook needs its input Secret: a connection string, BYOC values, or what the
parent check needs (the parent's CA bundle, the outbound proxy).
*/}}
{{- define "cr.preflight.hasInput" -}}
{{- or (not (empty .v.connectionString)) (eq (include "cr.tlsSource" .) "byoc") (not (empty (include "cr.parentCABundle" .))) (not (empty (include "cr.preflight.httpsProxy" .))) }}
{{- end }}

{{/* cr.preflight.parentURL is the parent the checks authenticate to, or empty when the values name none. */}}
{{- define "cr.preflight.parentURL" -}}
{{- $u := include "cr.parentURL" . }}
{{- if not (hasSuffix "://" $u) }}{{ $u }}{{ end }}
{{- end }}

{{/* cr.preflight.httpsProxy is the outbound proxy the parent is reached through, or empty. */}}
{{- define "cr.preflight.httpsProxy" -}}
{{- if include "cr.proxyEnabled" . | eq "true" }}
{{- $p := .v.Azure.proxySettings }}
{{- $p.httpsProxy | default $p.httpProxy }}
{{- end }}
{{- end }}

{{/* cr.preflight.needsNodes tells whether the checks read nodes: a node selector to match. */}}
{{- define "cr.preflight.needsNodes" -}}
{{- or (and .v.trustDistribution.enabled (eq (include "cr.useNodeSelector" .) "true")) (not (empty .v.registry.nodeSelector)) }}
{{- end }}
