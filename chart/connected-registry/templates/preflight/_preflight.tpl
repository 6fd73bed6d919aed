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

{{/*
cr.preflight.maskedConnectionString is the connection string with the letters and digits of SyncTokenPassword
(and of anything that is not a known field, which may be a piece of it) masked: internal/connstring's verdicts
never depend on them (its FuzzParse proves it), so the check is as strong and the password never leaves the
connection Secret.
*/}}
{{- define "cr.preflight.maskedConnectionString" -}}
{{- $known := list "connectedregistryname" "synctokenname" "parentgatewayendpoint" "parentendpointprotocol" }}
{{- $out := list }}
{{- range (splitList ";" (trim (.v.connectionString | default ""))) }}
{{- $kv := splitn "=" 2 . }}
{{- if and (contains "=" .) (has (lower $kv._0) $known) }}
{{- $out = append $out . }}
{{- else if and (contains "=" .) (eq (lower $kv._0) "synctokenpassword") }}
{{- $out = append $out (printf "%s=%s" $kv._0 (include "cr.preflight.mask" $kv._1)) }}
{{- else }}
{{- $out = append $out (include "cr.preflight.mask" .) }}
{{- end }}
{{- end }}
{{- join ";" $out }}
{{- end }}

{{- define "cr.preflight.mask" -}}
{{- regexReplaceAll "[0-9]" (regexReplaceAll "[A-Z]" (regexReplaceAll "[a-z]" . "x") "X") "0" }}
{{- end }}
