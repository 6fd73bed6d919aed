{{/*
cr.values returns the chart's values as JSON with every flat dotted key folded into its nested twin, so the
Azure extension's protected settings ({"tls.crt": "..."}) and nested values (tls: {crt: ...}) mean the same.
A flat key wins over the nested default. The deprecated hooks.image.* keys, when given, replace image.*.

Every top-level template folds the values once, at its top, and hands helpers a context:

  {{- $v := include "cr.values" . | fromJson }}
  {{- $ctx := dict "v" $v "root" . }}

Helpers that read values take that context ($ctx.v the folded values, $ctx.root the chart's root) and never
fold again; helpers that need only the release and the chart (cr.fullname, cr.labels) take the root.
*/}}
{{- define "cr.values" -}}
{{- $v := deepCopy .Values -}}
{{- range $key, $val := .Values }}
{{- if contains "." $key }}
{{- $parts := splitList "." $key }}
{{- $m := $v }}
{{- range $p := initial $parts }}
{{- if not (kindIs "map" (get $m $p)) }}{{ $_ := set $m $p dict }}{{ end }}
{{- $m = get $m $p }}
{{- end }}
{{- $_ := set $m (last $parts) $val }}
{{- $_ := unset $v $key }}
{{- end }}
{{- end }}
{{- /* The deprecated alias of image: a field given there wins, since image.* always holds its default. */}}
{{- range $field, $val := (($v.hooks | default dict).image | default dict) }}
{{- if $val }}{{ $_ := set $v.image $field $val }}{{ end }}
{{- end }}
{{- toJson $v }}
{{- end }}

{{- define "cr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cr.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* cr.podLabels: podLabels, for every pod template's labels (after the chart's). Argument: the context of cr.values. */}}
{{- define "cr.podLabels" -}}
{{- with .v.podLabels }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* cr.podAnnotations: podAnnotations, for every pod template. Argument: the context of cr.values. */}}
{{- define "cr.podAnnotations" -}}
{{- with .v.podAnnotations }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* cr.podSpecExtras: imagePullSecrets and priorityClassName, for every pod spec. Argument: the context of cr.values. */}}
{{- define "cr.podSpecExtras" -}}
{{- with .v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end }}

{{/* cr.extraEnv: the items of extraEnv, to append to every container's env. Argument: the context of cr.values. */}}
{{- define "cr.extraEnv" -}}
{{- with .v.extraEnv }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* cr.labels: common labels; selector labels never hold the chart version. Argument: (list $ "component") */}}
{{- define "cr.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cr.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: connected-registry
{{- end }}

{{- define "cr.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "cr.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* cr.azureAnnotations: the Arc identity of the cluster and the extension, when the Arc extension manager set it. */}}
{{- define "cr.azureAnnotations" -}}
{{- $az := .v.Azure | default dict }}
{{- $cluster := $az.Cluster | default dict }}
{{- $ext := $az.Extension | default dict }}
{{- with $cluster.ResourceId }}
connected-registry.io/arc-cluster-resource-id: {{ . | quote }}
{{- end }}
{{- with $cluster.Region }}
connected-registry.io/arc-cluster-region: {{ . | quote }}
{{- end }}
{{- with $cluster.Distribution }}
connected-registry.io/arc-cluster-distribution: {{ . | quote }}
{{- end }}
{{- with $cluster.Infrastructure }}
connected-registry.io/arc-cluster-infrastructure: {{ . | quote }}
{{- end }}
{{- with $ext.Name }}
connected-registry.io/arc-extension-name: {{ . | quote }}
{{- end }}
{{- with $ext.ResourceId }}
connected-registry.io/arc-extension-resource-id: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
cr.tlsSource names the one TLS source in use: "secret" (tls.secret), "byoc" (tls.crt + tls.key),
"cert-manager" (cert-manager.enabled) or "generated" (the certgen hook).
*/}}
{{- define "cr.tlsSource" -}}
{{- $tls := .v.tls | default dict }}
{{- if $tls.secret }}secret
{{- else if or $tls.crt $tls.key }}byoc
{{- else if (index .v "cert-manager").enabled }}cert-manager
{{- else }}generated
{{- end }}
{{- end }}

{{/* cr.tlsSecretName is the kubernetes.io/tls Secret the registry serves, whatever its source. */}}
{{- define "cr.tlsSecretName" -}}
{{- if eq (include "cr.tlsSource" .) "secret" }}{{ .v.tls.secret }}
{{- else }}{{ include "cr.fullname" .root }}-tls
{{- end }}
{{- end }}

{{/* cr.useNodeSelector resolves useNodeSelector and its older, inverted name skipNodeSelector. */}}
{{- define "cr.useNodeSelector" -}}
{{- $td := .v.trustDistribution | default dict }}
{{- if kindIs "bool" $td.skipNodeSelector }}{{ not $td.skipNodeSelector }}
{{- else }}{{ $td.useNodeSelector | default false }}
{{- end }}
{{- end }}

{{/* cr.connectionFields parses the connection string into a dict of its fields (JSON). */}}
{{- define "cr.connectionFields" -}}
{{- $fields := dict }}
{{- range (splitList ";" (.v.connectionString | default "")) }}
{{- if trim . }}
{{- $kv := splitn "=" 2 (trim .) }}
{{- $_ := set $fields (trim $kv._0) (trim ($kv._1 | default "")) }}
{{- end }}
{{- end }}
{{- toJson $fields }}
{{- end }}

{{/*
cr.parentURL is the parent registry: registry.parent.url, else the connection string's endpoint, where an
ACR data endpoint <name>.<region>.data.azurecr.io (.cn, .us) maps to the login server <name>.azurecr.io, as
internal/connstring's ParentHost does for the binaries. Both are tested against one table,
internal/connstring/testdata/parent-endpoints.json.
*/}}
{{- define "cr.parentURL" -}}
{{- if .v.registry.parent.url }}
{{- trimSuffix "/" .v.registry.parent.url }}
{{- else }}
{{- $f := include "cr.connectionFields" . | fromJson }}
{{- $endpoint := get $f "ParentGatewayEndpoint" }}
{{- $acr := "^([a-z0-9-]+)\\.([a-z0-9-]+)\\.data\\.azurecr\\.(io|cn|us)(:[0-9]+)?$" }}
{{- if regexMatch $acr (lower $endpoint) }}
{{- $endpoint = regexReplaceAll $acr (lower $endpoint) "${1}.azurecr.${3}${4}" }}
{{- end }}
{{- printf "%s://%s" (get $f "ParentEndpointProtocol" | default "https" | lower) $endpoint }}
{{- end }}
{{- end }}

{{/* cr.parentCredentialsSecret is the Secret the credential helper reads, or empty for an anonymous parent. */}}
{{- define "cr.parentCredentialsSecret" -}}
{{- if .v.registry.parent.credentialsSecret }}{{ .v.registry.parent.credentialsSecret }}
{{- else if .v.connectionString }}{{ include "cr.fullname" .root }}-connection
{{- end }}
{{- end }}

{{/* cr.parentCABundle is the PEM the registry trusts for its parent besides the system roots. */}}
{{- define "cr.parentCABundle" -}}
{{- $bundle := list }}
{{- with .v.registry.parent.caBundle }}{{ $bundle = append $bundle (trim .) }}{{ end }}
{{- if and (include "cr.proxyEnabled" . | eq "true") .v.Azure.proxySettings.proxyCert }}
{{- $bundle = append $bundle (trim .v.Azure.proxySettings.proxyCert) }}
{{- end }}
{{- if $bundle }}{{ join "\n" $bundle }}{{ "\n" }}{{ end }}
{{- end }}

{{/* cr.proxyEnabled: "true" when the Arc extension manager reports an outbound proxy for the parent traffic. */}}
{{- define "cr.proxyEnabled" -}}
{{- $p := .v.Azure.proxySettings | default dict }}
{{- or (eq (toString $p.isProxyEnabled) "true") false }}
{{- end }}

{{/*
cr.image is the project's image: image.repository:image.tag (the chart's appVersion by default), or with
global.azure.images set, its connectedRegistry entry by digest.
*/}}
{{- define "cr.image" -}}
{{- include "cr.imageRef" (dict "v" .v "name" "connectedRegistry" "default" (printf "%s:%s" .v.image.repository (.v.image.tag | default .root.Chart.AppVersion))) }}
{{- end }}

{{/*
cr.azureImages returns global.azure.images as JSON: the Azure Marketplace's image block, which the extension's
packaging tool rewrites to the Marketplace's registry. Empty when not set.
*/}}
{{- define "cr.azureImages" -}}
{{- toJson ((((.v.global | default dict).azure | default dict).images) | default dict) }}
{{- end }}

{{/*
cr.imageRef is one image the release runs. With global.azure.images set, every image comes from it by digest:
its entry .name as <registry>/<image>@<digest>, and a missing entry fails the render. Without it, .default.
Argument: (dict "v" $v "name" "<entry>" "default" "<repository:tag>").
*/}}
{{- define "cr.imageRef" -}}
{{- $images := include "cr.azureImages" . | fromJson }}
{{- if $images }}
{{- $e := get $images .name | default dict }}
{{- if not (and $e.registry $e.image $e.digest) }}
{{- fail (printf "global.azure.images is set, so every image the release runs comes from it by digest, but global.azure.images.%s lacks registry, image or digest: give all three (make extension-bundle writes them)" .name) }}
{{- end }}
{{- printf "%s/%s@%s" (trimSuffix "/" $e.registry) $e.image $e.digest }}
{{- else }}
{{- .default }}
{{- end }}
{{- end }}

{{/* cr.serviceDNSNames lists the names the registry's certificate must hold besides the ClusterIP. */}}
{{- define "cr.serviceDNSNames" -}}
{{- $svc := include "cr.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- toJson (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) }}
{{- end }}

{{/* cr.restrictedContainerSecurityContext: Pod Security Standard "restricted" for our own containers. */}}
{{- define "cr.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
cr.apiTokenVolume: a short-lived API token mounted explicitly, for the ServiceAccounts of the registry pod, the
hooks and the trust agent, none of which automount one. Argument: the token's lifetime in seconds.
*/}}
{{- define "cr.apiTokenVolume" -}}
- name: token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: {{ . }}
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                fieldPath: metadata.namespace
{{- end }}

{{/* cr.apiTokenMount mounts cr.apiTokenVolume where client-go looks for the in-cluster token. */}}
{{- define "cr.apiTokenMount" -}}
- name: token
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end }}
