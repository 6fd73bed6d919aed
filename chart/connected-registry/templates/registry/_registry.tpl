{{/*
The registry pod's parts. Each define takes the pod's context, which registry/deployment.yaml builds once:
  v, root      the folded values and the chart's root, as every helper gets them (see cr.values);
  acr          registry.engine=acr: Microsoft's connected-registry image instead of Distribution;
  credentials  the Secret the Distribution engine's credential helper reads, empty for an anonymous parent;
  caBundle     the PEM trusted for the parent besides the system roots (registry.parent.caBundle, proxyCert);
  proxy        the Arc extension's outbound proxy is on;
  gate         the registry reaches its parent through the parent gate (cr.parentGate).
The registry and registry-http containers are one define, cr.registry.container, with http false or true.
*/}}

{{- /*
cr.parentGate is "true" when the registry reaches its parent through the parent gate: the Distribution engine with
registry.parent.responseTimeout other than 0s. Argument: the context of cr.values.
*/}}
{{- define "cr.parentGate" -}}
{{- and (ne .v.registry.engine "acr") (not (regexMatch "^(0+(\\.0+)?(ms|h|m|s))+$" (toString .v.registry.parent.responseTimeout))) }}
{{- end }}

{{- /* The parent gate's address on the pod's loopback. */}}
{{- define "cr.parentGateAddr" -}}
127.0.0.1:5128
{{- end }}

{{- /* cr.clientTokens.host: the Service's address as a URL host (an IPv6 address in brackets). */}}
{{- define "cr.clientTokens.host" -}}
{{- if contains ":" .v.service.clusterIP }}[{{ .v.service.clusterIP }}]{{ else }}{{ .v.service.clusterIP }}{{ end }}
{{- end }}

{{- /* cr.clientTokens.service: auth.token.service, the aud claim of the registry's bearer tokens. */}}
{{- define "cr.clientTokens.service" -}}
{{- include "cr.trustHost" . }}
{{- end }}

{{- /*
cr.clientTokens.realm: the token endpoint, on the registry's own host and port (the token server fronts the
registry): go-containerregistry clients refuse a realm on another port of a private address.
*/}}
{{- define "cr.clientTokens.realm" -}}
https://{{ include "cr.clientTokens.host" . }}:443/token
{{- end }}

{{- /* The token server's container port, the registry's front; the Service's 443 maps to it. */}}
{{- define "cr.clientTokens.containerPort" -}}
5001
{{- end }}

{{- /* The registry's proxy.remoteurl: the parent, or the parent gate that forwards to it. */}}
{{- define "cr.remoteURL" -}}
{{- if eq (include "cr.parentGate" .) "true" }}
{{- printf "http://%s" (include "cr.parentGateAddr" .) }}
{{- else }}
{{- include "cr.parentURL" . }}
{{- end }}
{{- end }}

{{- /* cr.registry.parentCAEnv: the parent's private CA (and a proxy's certificate) besides the system roots. */}}
{{- define "cr.registry.parentCAEnv" -}}
{{- if .caBundle }}
# The parent's private CA (and a proxy's certificate) in addition to the image's system roots.
- name: SSL_CERT_FILE
  value: /etc/connected-registry/parent-ca/ca.crt
- name: SSL_CERT_DIR
  value: /etc/ssl/certs
{{- end }}
{{- end }}

{{- /*
cr.registry.parentEnv: how a registry container of either engine reaches its parent when it talks to it itself
(no parent gate): the private CA and the outbound proxy, whose URLs come from the proxy Secret since they may hold
a password. Behind the gate, the registry talks to nothing but the gate on the pod's loopback.
*/}}
{{- define "cr.registry.parentEnv" -}}
{{- if not .gate }}
{{- include "cr.registry.parentCAEnv" . }}
{{- if .proxy }}
{{- $p := .v.Azure.proxySettings }}
{{- $secret := printf "%s-proxy" (include "cr.fullname" .root) }}
{{- range $name, $key := dict "HTTP_PROXY" "httpProxy" "HTTPS_PROXY" "httpsProxy" }}
{{- if index $p $key }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- include "cr.registry.noProxyEnv" . }}
{{- end }}
{{- end }}
{{- end }}

{{- /*
cr.registry.noProxyEnv: NO_PROXY for a container that reaches the parent through the outbound proxy: the values'
noProxy, the registry's Service, the cluster's service range and in-cluster names.
*/}}
{{- define "cr.registry.noProxyEnv" -}}
{{- $p := .v.Azure.proxySettings }}
{{- $noProxy := list }}
{{- with $p.noProxy }}{{ $noProxy = append $noProxy . }}{{ end }}
{{- $noProxy = append $noProxy .v.service.clusterIP }}
{{- if .v.service.cidr }}
{{- $noProxy = append $noProxy .v.service.cidr }}
{{- else }}
{{- $serviceCIDR := lookup "networking.k8s.io/v1" "ServiceCIDR" "" "kubernetes" }}
{{- with $serviceCIDR }}{{ $noProxy = concat $noProxy .spec.cidrs }}{{ end }}
{{- end }}
{{- $noProxy = concat $noProxy (list "localhost" "127.0.0.1" ".svc" ".svc.cluster.local" "kubernetes.default") }}
- name: NO_PROXY
  value: {{ join "," (uniq $noProxy) | quote }}
{{- end }}

{{- /* cr.registry.parentCAMount mounts the parent's CA bundle (cr.parentCABundle) for SSL_CERT_FILE. */}}
{{- define "cr.registry.parentCAMount" -}}
{{- if and .caBundle (not .gate) }}
- name: parent-ca
  mountPath: /etc/connected-registry/parent-ca
  readOnly: true
{{- end }}
{{- end }}

{{- /*
cr.registry.container: a container of the Distribution engine: "registry" on HTTPS, or with http "registry-http",
plain HTTP on the Service's port 80 (httpEnabled) with the same configuration and cache.
*/}}
{{- define "cr.registry.container" -}}
{{- $r := .v.registry -}}
{{- if .http -}}
# Plain HTTP on the Service's port 80 (httpEnabled): the same registry configuration and cache, without TLS.
{{ end -}}
- name: {{ ternary "registry-http" "registry" (.http | default false) }}
  image: {{ include "cr.imageRef" (dict "v" .v "name" "registry" "default" (printf "%s:%s" $r.image.repository $r.image.tag)) }}
  args: ["serve", "/etc/distribution/config.yml"]
  imagePullPolicy: {{ $r.image.pullPolicy }}
  env:
    # Distribution v3 exports traces to localhost:4318 unless told not to.
    - name: OTEL_TRACES_EXPORTER
      value: none
    - name: CONNECTED_REGISTRY_PARENT_CREDENTIALS
      value: /etc/connected-registry/parent
    {{- if and (not .gate) (not $r.parent.http2) }}
    # HTTP/1.1 to the parent (registry.parent.http2=false).
    - name: GODEBUG
      value: http2client=0
    {{- end }}
    {{- with include "cr.registry.parentEnv" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- if .http }}
    - name: REGISTRY_HTTP_ADDR
      value: ":5080"
    - name: REGISTRY_HTTP_TLS_CERTIFICATE
      value: ""
    - name: REGISTRY_HTTP_TLS_KEY
      value: ""
    {{- if .v.metrics.enabled }}
    # Its own debug port: two registries cannot share one.
    - name: REGISTRY_HTTP_DEBUG_ADDR
      value: {{ include "cr.registry.debugAddr" (dict "http" true) | quote }}
    {{- end }}
    {{- end }}
    {{- with include "cr.storage.env" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with include "cr.extraEnv" . }}
    {{- . | nindent 4 }}
    {{- end }}
  {{- if .http }}
  ports:
    - name: http
      containerPort: 5080
      protocol: TCP
  readinessProbe:
    httpGet:
      path: /
      port: http
    periodSeconds: 5
  # A hung container is restarted, rather than taking the pod, and HTTPS with it, out of the Service.
  livenessProbe:
    httpGet:
      path: /
      port: http
    periodSeconds: 20
    failureThreshold: 6
  {{- else }}
  ports:
    - name: https
      containerPort: 5443
      protocol: TCP
  startupProbe:
    httpGet:
      path: /
      port: https
      scheme: HTTPS
    periodSeconds: 2
    failureThreshold: 60
  readinessProbe:
    httpGet:
      path: /
      port: https
      scheme: HTTPS
    periodSeconds: 5
  # Our probe (registry-probe, installed by the credential-helper init container): it fails once the registry
  # serves another certificate than the tls-reloader wrote, so the kubelet starts it again with the renewed one,
  # and when the registry has not answered for two minutes.
  livenessProbe:
    exec:
      command:
        - /helpers/connected-registry
        - registry-probe
        - --tls-dir=/etc/connected-registry/tls
        - --addr=127.0.0.1:5443
        - --state=/tmp/connected-registry-probe
        - --hang-after=2m
    periodSeconds: 10
    timeoutSeconds: 10
    failureThreshold: 2
  {{- end }}
  securityContext:
    {{- toYaml $r.securityContext | nindent 4 }}
  resources:
    {{- toYaml $r.resources | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/distribution
      readOnly: true
    {{- if not .http }}
    - name: tls
      mountPath: /etc/connected-registry/tls
      readOnly: true
    {{- end }}
    - name: data
      mountPath: /var/lib/registry
    {{- if .credentials }}
    - name: parent-credentials
      mountPath: /etc/connected-registry/parent
      readOnly: true
    {{- end }}
    {{- if or .credentials (not .http) }}
    - name: helpers
      mountPath: /helpers
      readOnly: true
    {{- end }}
    {{- if $r.clientAuthSecret }}
    - name: client-auth
      mountPath: /etc/connected-registry/auth
      readOnly: true
    {{- end }}
    {{- if .v.clientTokens.enabled }}
    - name: token-jwks
      mountPath: /etc/connected-registry/token-jwks
      readOnly: true
    {{- end }}
    {{- with include "cr.registry.parentCAMount" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    - name: tmp
      mountPath: /tmp
{{- end }}

{{- /* cr.registry.acrContainer: Microsoft's connected-registry image (registry.engine=acr). */}}
{{- define "cr.registry.acrContainer" -}}
{{- $r := .v.registry -}}
- name: registry
  image: {{ include "cr.imageRef" (dict "v" .v "name" "acrConnectedRegistry" "default" (printf "%s:%s" $r.acrImage.repository $r.acrImage.tag)) }}
  imagePullPolicy: {{ $r.image.pullPolicy }}
  env:
    - name: ACR_REGISTRY_CONNECTION_STRING
      valueFrom:
        secretKeyRef:
          name: {{ include "cr.fullname" .root }}-connection
          key: connectionString
    - name: ACR_REGISTRY_CERTIFICATE_VOLUME
      value: /var/acr/certs
    - name: ACR_REGISTRY_DATA_VOLUME
      value: /var/acr/data
    {{- with include "cr.registry.parentEnv" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with include "cr.extraEnv" . }}
    {{- . | nindent 4 }}
    {{- end }}
  ports:
    - name: https
      containerPort: 8080
      protocol: TCP
  readinessProbe:
    tcpSocket:
      port: https
    periodSeconds: 5
  livenessProbe:
    tcpSocket:
      port: https
    periodSeconds: 20
    failureThreshold: 6
  securityContext:
    {{- toYaml $r.securityContext | nindent 4 }}
  resources:
    {{- toYaml $r.resources | nindent 4 }}
  volumeMounts:
    - name: tls
      mountPath: /var/acr/certs
      readOnly: true
    - name: data
      mountPath: /var/acr/data
    {{- with include "cr.registry.parentCAMount" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    - name: tmp
      mountPath: /tmp
{{- end }}

{{- /* cr.registry.tlsReloader publishes the CA to the trust bundle and feeds the registry its certificate. */}}
{{- define "cr.registry.tlsReloader" -}}
{{- $fullname := include "cr.fullname" .root -}}
- name: tls-reloader
  image: {{ include "cr.image" . }}
  imagePullPolicy: {{ .v.image.pullPolicy }}
  # A native sidecar: it starts before the registry, and the registry starts once it wrote the certificate.
  restartPolicy: Always
  args:
    - tls-reloader
    - --namespace={{ .root.Release.Namespace }}
    - --secret={{ include "cr.tlsSecretName" . }}
    - --bundle-configmap={{ $fullname }}-trust-bundle
    {{- if eq (include "cr.trustEnabled" .) "true" }}
    - --daemonset={{ $fullname }}-trust-agent
    {{- end }}
    - --release={{ .root.Release.Name }}
    {{- if not .acr }}
    {{- /* The acr engine mounts the Secret and reloads on its own terms: only the CA bundle is published. */}}
    - --tls-dir=/etc/connected-registry/tls
    - --cluster-ip={{ .v.service.clusterIP }}
    {{- end }}
    - --health-addr=:8082
    {{- if .v.metrics.enabled }}
    {{- /* The metrics derived from the release's objects, and the registry's own from its loopback debug port. */}}
    - --metrics-addr=:{{ .v.metrics.port }}
    {{- if not .acr }}
    - --proxy-metrics={{ include "cr.registry.debugMetrics" . }}
    {{- end }}
    {{- if (.v.sync | default dict).enabled }}
    - --sync-status-configmap={{ $fullname }}-sync-status
    {{- end }}
    {{- end }}
    - --log-level={{ .v.logLevel }}
  {{- if .v.metrics.enabled }}
  ports:
    - name: metrics
      containerPort: {{ .v.metrics.port }}
      protocol: TCP
  {{- end }}
  # The Events about a certificate it does not install are about this pod.
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_UID
      valueFrom:
        fieldRef:
          fieldPath: metadata.uid
    {{- with include "cr.extraEnv" . }}
    {{- . | nindent 4 }}
    {{- end }}
  startupProbe:
    httpGet:
      path: /started
      port: 8082
    periodSeconds: 1
    failureThreshold: 600
  securityContext:
    {{- include "cr.restrictedContainerSecurityContext" . | nindent 4 }}
  resources:
    {{- toYaml .v.hooks.resources | nindent 4 }}
  volumeMounts:
    {{- if not .acr }}
    - name: tls
      mountPath: /etc/connected-registry/tls
    {{- end }}
    {{- include "cr.apiTokenMount" . | nindent 4 }}
{{- end }}

{{- /*
cr.registry.tokenServer: the client-token issuer (clientTokens.enabled), a native sidecar that starts after the
tls-reloader (it serves the registry's certificate) and before the registry (which reads the key set it writes).
*/}}
{{- define "cr.registry.tokenServer" -}}
{{- $ct := .v.clientTokens -}}
# The registry's front, on the Service's 443: /token is the token endpoint of the registry's auth.token, which
# checks client tokens from Secret {{ $ct.secret }} (followed through the API, so changes apply within seconds)
# and issues short-lived bearer tokens for the repositories each token's scope lists; every other request goes,
# unchanged, to the registry on 127.0.0.1:5443, which checks the tokens.
- name: token-server
  image: {{ include "cr.image" . }}
  imagePullPolicy: {{ .v.image.pullPolicy }}
  restartPolicy: Always
  args:
    - token-server
    - --namespace={{ .root.Release.Namespace }}
    - --secret={{ $ct.secret }}
    - --listen=:{{ include "cr.clientTokens.containerPort" . }}
    - --tls-dir=/etc/connected-registry/tls
    - --service={{ include "cr.clientTokens.service" . }}
    - --token-lifetime={{ $ct.tokenLifetime }}
    - --key-dir=/var/run/token-server/keys
    - --jwks-file=/var/run/token-server/jwks/jwks.json
    - --fail-burst={{ $ct.failedAttempts.burst }}
    - --fail-every={{ $ct.failedAttempts.every }}
    - --rotate-every={{ $ct.keyRotation }}
    - --registry-url=https://127.0.0.1:5443/v2/
    - --health-addr=:8083
    {{- if $ct.pullSecret.namespaces }}
    - --pull-secret-namespaces={{ join "," $ct.pullSecret.namespaces }}
    - --pull-secret={{ $ct.pullSecret.name }}
    - --pull-secret-credentials={{ $ct.pullSecret.credentialsSecret }}
    - --pull-secret-owner={{ .root.Release.Namespace }}/{{ .root.Release.Name }}
    {{- end }}
    - --log-level={{ .v.logLevel }}
  {{- with include "cr.extraEnv" . }}
  env:
    {{- . | nindent 4 }}
  {{- end }}
  ports:
    - name: token
      containerPort: {{ include "cr.clientTokens.containerPort" . }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /started
      port: 8083
    periodSeconds: 1
    failureThreshold: 120
  readinessProbe:
    tcpSocket:
      port: token
    periodSeconds: 5
  securityContext:
    {{- include "cr.restrictedContainerSecurityContext" . | nindent 4 }}
  resources:
    {{- toYaml $ct.resources | nindent 4 }}
  volumeMounts:
    - name: tls
      mountPath: /etc/connected-registry/tls
      readOnly: true
    - name: token-keys
      mountPath: /var/run/token-server/keys
    - name: token-jwks
      mountPath: /var/run/token-server/jwks
    {{- include "cr.apiTokenMount" . | nindent 4 }}
{{- end }}

{{- /* cr.registry.credentialHelper: the init container that installs the parent's credential helper. */}}
{{- define "cr.registry.credentialHelper" -}}
# Delivers our static binary into the registry container, in any registry image (the official Alpine one and
# a shell-less one alike): as the credential helper Distribution's proxy.exec runs, and, through the link
# /helpers/connected-registry, as the registry container's liveness probe.
- name: credential-helper
  image: {{ include "cr.image" . }}
  imagePullPolicy: {{ .v.image.pullPolicy }}
  args:
    - install-credential-helper
    - --dest=/helpers/docker-credential-connected-registry
    - --link=/helpers/connected-registry
  {{- with include "cr.extraEnv" . }}
  env:
    {{- . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "cr.restrictedContainerSecurityContext" . | nindent 4 }}
  resources:
    {{- toYaml .v.hooks.resources | nindent 4 }}
  volumeMounts:
    - name: helpers
      mountPath: /helpers
{{- end }}

{{- /*
cr.registry.parentGate: the sidecar the registry reaches its parent through (see cr.parentGate), with the
outbound proxy's URL from the proxy Secret.
*/}}
{{- define "cr.registry.parentGate" -}}
{{- $parent := .v.registry.parent }}
{{- $p := .v.Azure.proxySettings | default dict -}}
# The parent gate, a native sidecar on the pod's loopback (it starts before the registry and stops after
# it): the registry's remoteurl. It forwards the registry's reads to the parent, to the token endpoint the
# parent names (whose realm it rewrites to itself, so the registry keeps the challenge) and to the storage
# hosts the parent redirects blobs to, and to nothing else. It cuts connections the parent leaves unanswered
# for registry.parent.responseTimeout, so pulls of cached content do not wait for a silent parent; with
# registry.parent.shareFetches, concurrent requests for a blob the cache lacks share one fetch.
- name: parent-gate
  image: {{ include "cr.image" . }}
  imagePullPolicy: {{ .v.image.pullPolicy }}
  restartPolicy: Always
  args:
    - parent-gate
    - --listen={{ include "cr.parentGateAddr" . }}
    - --parent={{ include "cr.parentURL" . }}
    - --response-timeout={{ $parent.responseTimeout }}
    - --dial-timeout={{ $parent.responseTimeout }}
    - --body-timeout={{ $parent.gate.bodyTimeout }}
    - --share-fetches={{ $parent.shareFetches }}
    {{- if $parent.shareFetches }}
    - --spool-dir=/var/spool/parent-gate
    - --spool-budget={{ $parent.gate.spoolSize }}
    {{- end }}
    {{- if .v.metrics.enabled }}
    - --metrics-addr=:{{ .v.metrics.gatePort }}
    {{- end }}
    {{- if eq (include "cr.cache.onVolume" .) "true" }}
    # The cache volume, read-only: a blob the registry lacks that the volume cannot hold is refused before its
    # bytes move, and logged once with the value that fixes it.
    - --cache-dir=/var/lib/registry
    - --volume-size={{ .v.pvc.storageRequest }}
    {{- with .v.registry.cache.maxSize }}
    - --cache-max-size={{ . }}
    {{- end }}
    {{- end }}
    {{- if eq (include "cr.cache.enabled" .) "true" }}
    # registry.cache.maxSize: the registry's notifications of every manifest pulled come to the gate, which keeps
    # the last pull of each in this ConfigMap for the eviction.
    - --pulls-configmap={{ include "cr.fullname" .root }}-cache-pulls
    {{- end }}
    - --log-level={{ .v.logLevel }}
    {{- with include "cr.replicas.gateArgs" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
  {{- $peerPorts := include "cr.replicas.gatePorts" . | trim }}
  {{- if or .v.metrics.enabled $peerPorts }}
  ports:
    {{- if .v.metrics.enabled }}
    - name: gate-metrics
      containerPort: {{ .v.metrics.gatePort }}
      protocol: TCP
    {{- end }}
    {{- with $peerPorts }}
    {{- . | trimPrefix "ports:\n" | nindent 2 }}
    {{- end }}
  {{- end }}
  {{- $peerEnv := include "cr.replicas.gateEnv" . | trim }}
  {{- if or .proxy .caBundle .v.extraEnv $peerEnv }}
  env:
    {{- with $peerEnv }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- if and .proxy (or $p.httpsProxy $p.httpProxy) }}
    # The outbound proxy carries the gate's connections to the parent.
    - name: HTTPS_PROXY
      valueFrom:
        secretKeyRef:
          name: {{ include "cr.fullname" .root }}-proxy
          key: {{ ternary "httpsProxy" "httpProxy" (not (empty $p.httpsProxy)) }}
    {{- with $p.noProxy }}
    - name: NO_PROXY
      value: {{ . | quote }}
    {{- end }}
    {{- end }}
    {{- with include "cr.registry.parentCAEnv" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with include "cr.extraEnv" . }}
    {{- . | nindent 4 }}
    {{- end }}
  {{- end }}
  securityContext:
    {{- include "cr.restrictedContainerSecurityContext" . | nindent 4 }}
  resources:
    {{- toYaml $parent.gate.resources | nindent 4 }}
  {{- if or .caBundle $parent.shareFetches (eq (include "cr.cache.enabled" .) "true") (eq (include "cr.cache.onVolume" .) "true") }}
  volumeMounts:
    {{- if eq (include "cr.cache.onVolume" .) "true" }}
    # Read-only: a blob that would not fit is refused before its bytes move; its use and size are metrics.
    - name: data
      mountPath: /var/lib/registry
      readOnly: true
    {{- end }}
    {{- if eq (include "cr.cache.enabled" .) "true" }}
    {{- include "cr.apiTokenMount" . | nindent 4 }}
    {{- end }}
    {{- if .caBundle }}
    - name: parent-ca
      mountPath: /etc/connected-registry/parent-ca
      readOnly: true
    {{- end }}
    {{- if $parent.shareFetches }}
    - name: gate-spool
      mountPath: /var/spool/parent-gate
    {{- end }}
  {{- end }}
{{- end }}

{{- /* cr.registry.volumes: the registry pod's volumes. */}}
{{- define "cr.registry.volumes" -}}
{{- $r := .v.registry }}
{{- $fullname := include "cr.fullname" .root }}
{{- if .acr -}}
- name: tls
  secret:
    secretName: {{ include "cr.tlsSecretName" . }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- else -}}
- name: config
  configMap:
    name: {{ $fullname }}-config
# The registry's certificate and key, as the tls-reloader writes them from {{ include "cr.tlsSecretName" . }};
# in memory, never on the node's disk.
- name: tls
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- if eq .v.storage.type "pvc" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ $fullname }}-data
{{- else }}
# The cache is in the object store (storage.type={{ .v.storage.type }}); the registry writes nothing else here.
- name: data
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
{{- with .credentials }}
- name: parent-credentials
  secret:
    secretName: {{ . }}
{{- end }}
{{- if not .acr }}
- name: helpers
  emptyDir:
    sizeLimit: 128Mi
{{- end }}
{{- with $r.clientAuthSecret }}
- name: client-auth
  secret:
    secretName: {{ . }}
    items:
      - key: htpasswd
        path: htpasswd
{{- end }}
{{- if .v.clientTokens.enabled }}
# The token server's signing keys (only its container mounts them) and the public key set the registry reads;
# in memory, kept across restarts of either container, new with each pod.
- name: token-keys
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: token-jwks
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- if .caBundle }}
- name: parent-ca
  configMap:
    name: {{ $fullname }}-parent-ca
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if and .gate $r.parent.shareFetches }}
# Blobs the parent gate spools for concurrent requests, each removed once the last request has its
# copy; the gate keeps them below this size (registry.parent.gate.spoolSize).
- name: gate-spool
  emptyDir:
    sizeLimit: {{ $r.parent.gate.spoolSize }}
{{- end }}
{{ include "cr.apiTokenVolume" 3600 }}
{{- end }}

{{- /*
cr.registry.configMap: the ConfigMap of the Distribution engine's configuration, rendered by
registry/configmap.yaml; the registry pod's checksum/config annotation hashes this same text.
*/}}
{{- define "cr.registry.configMap" -}}
{{- $v := .v }}
{{- if eq $v.registry.engine "distribution" }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "cr.fullname" .root }}-config
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "cr.labels" (list .root "registry") | nindent 4 }}
data:
  {{- /* Distribution v3 configuration. Holds no secret: the parent's credentials come from the credential
  helper, which reads the mounted Secret; Distribution asks it again after proxy.exec.lifetime, so a rotated
  sync token or credentials Secret is picked up without a restart. */}}
  config.yml: |
    version: 0.1
    log:
      level: {{ $v.registry.logLevel }}
      formatter: text
      fields:
        service: connected-registry
    storage:
      {{- include "cr.storage.config" . | trim | nindent 6 }}
      {{- if ne (include "cr.cache.enabled" .) "true" }}
      cache:
        blobdescriptor: inmemory
      {{- else }}
      # No blob descriptor cache with registry.cache.maxSize: the eviction's garbage collection deletes blobs
      # behind this process's back, and a cached descriptor would make it answer 200 with no bytes for a collected
      # blob instead of fetching it again from the parent.
      {{- end }}
      maintenance:
        uploadpurging:
          enabled: true
          age: 168h
          interval: 24h
          dryrun: false
        {{- if eq $v.registry.mode "ReadOnly" }}
        readonly:
          enabled: true
        {{- end }}
    http:
      addr: :5443
      net: tcp
      tls:
        certificate: /etc/connected-registry/tls/tls.crt
        key: /etc/connected-registry/tls/tls.key
        minimumtls: tls1.2
      headers:
        X-Content-Type-Options: [nosniff]
      draintimeout: 10s
      http2:
        disabled: {{ not $v.registry.http2 }}
      {{- if $v.metrics.enabled }}
      # Metrics on the pod's loopback only: this server also serves pprof and expvar. The tls-reloader serves
      # its /metrics, and nothing else of it, on the metrics port.
      debug:
        addr: {{ include "cr.registry.debugAddr" dict }}
        prometheus:
          enabled: true
          path: /metrics
      {{- end }}
    {{- if $v.clientTokens.enabled }}
    # Client tokens: every request needs a bearer token of the token-server container, which checks the
    # client token's name and password and grants pull on the repositories its scope lists. Anonymous
    # requests, /v2/_catalog included, get 401.
    auth:
      token:
        realm: {{ include "cr.clientTokens.realm" . | quote }}
        service: {{ include "cr.clientTokens.service" . | quote }}
        issuer: connected-registry-token-server
        jwks: /etc/connected-registry/token-jwks/jwks.json
        signingalgorithms: [ES256]
    {{- end }}
    {{- with $v.registry.clientAuthSecret }}
    auth:
      htpasswd:
        realm: connected-registry
        path: /etc/connected-registry/auth/htpasswd
    {{- end }}
    health:
      storagedriver:
        enabled: true
        interval: 10s
        threshold: 3
    {{- if eq (include "cr.cache.enabled" .) "true" }}
    # registry.cache.maxSize: one event per manifest pulled (served from the cache or not) to the parent gate on
    # the pod's loopback, which records when each was last pulled. Blob pulls and pushes are not sent.
    notifications:
      endpoints:
        - name: parent-gate
          url: "http://{{ include "cr.parentGateAddr" . }}/_gate/events"
          timeout: 2s
          threshold: 5
          backoff: 5s
          ignoredmediatypes: [application/octet-stream]
          ignore:
            actions: [push, delete, mount]
    {{- end }}
    proxy:
      {{- if eq (include "cr.parentGate" .) "true" }}
      # The parent gate on the pod's loopback, in plain HTTP: it speaks TLS to {{ include "cr.parentURL" . }}.
      {{- end }}
      remoteurl: {{ include "cr.remoteURL" . | quote }}
      {{- if include "cr.parentCredentialsSecret" . }}
      exec:
        command: /helpers/docker-credential-connected-registry
        lifetime: 5m
      {{- end }}
      ttl: {{ $v.registry.cache.ttl | quote }}
{{ end }}
{{- end }}

{{- /* cr.registry.debugAddr: Distribution's debug server on the pod's loopback; with http, registry-http's. */}}
{{- define "cr.registry.debugAddr" -}}
127.0.0.1:{{ ternary 5102 5101 (.http | default false) }}
{{- end }}

{{- /* cr.registry.debugMetrics: the tls-reloader's --proxy-metrics, the registry containers' /metrics. */}}
{{- define "cr.registry.debugMetrics" -}}
registry=http://{{ include "cr.registry.debugAddr" dict }}/metrics
{{- if .v.httpEnabled }},registry-http=http://{{ include "cr.registry.debugAddr" (dict "http" true) }}/metrics{{ end }}
{{- end }}

{{- /* cr.networkPolicy.ports: the registry pod's ports clients reach (argument: the folded values). */}}
{{- define "cr.networkPolicy.ports" -}}
- port: {{ ternary 8080 5443 (eq .registry.engine "acr") }}
  protocol: TCP
{{- if .httpEnabled }}
- port: 5080
  protocol: TCP
{{- end }}
{{- if .clientTokens.enabled }}
- port: 5001
  protocol: TCP
{{- end }}
{{- if .metrics.enabled }}
# Prometheus scrapes the metrics ports (metrics.enabled).
- port: {{ .metrics.port }}
  protocol: TCP
{{- if eq (include "cr.parentGate" (dict "v" .)) "true" }}
- port: {{ .metrics.gatePort }}
  protocol: TCP
{{- end }}
{{- end }}
{{- end }}
