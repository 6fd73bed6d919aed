{{/*
Storage and replicas: the registry's storage driver (storage.type), the replicas' shared secret, the headless
Service the parent gates find each other through. Every define takes the context of cr.values.
*/}}

{{- /* cr.storage.object is "true" with an object store (storage.type azure or s3). */}}
{{- define "cr.storage.object" -}}
{{- has .v.storage.type (list "azure" "s3") }}
{{- end }}

{{- /* cr.replicas.shared is "true" when several replicas share the cache: replicas above 1. */}}
{{- define "cr.replicas.shared" -}}
{{- gt (int .v.replicas) 1 }}
{{- end }}

{{- /* cr.replicas.sharedSecret: the Secret of Distribution's http.secret and the gates' peer secret. */}}
{{- define "cr.replicas.sharedSecret" -}}
{{ include "cr.fullname" .root }}-shared
{{- end }}

{{- /* cr.replicas.peersService: the headless Service that lists the ready replicas, for the parent gates. */}}
{{- define "cr.replicas.peersService" -}}
{{ include "cr.fullname" .root }}-peers
{{- end }}

{{- /* The parent gate's peer port, on the pod's address. */}}
{{- define "cr.replicas.peerPort" -}}
5129
{{- end }}

{{- /* cr.replicas.peers is "true" when the parent gates route each blob to its owner replica. */}}
{{- define "cr.replicas.peers" -}}
{{- and (eq (include "cr.replicas.shared" .) "true") (eq (include "cr.parentGate" .) "true") .v.registry.parent.shareFetches }}
{{- end }}

{{- /*
cr.storage.config: the storage driver of Distribution's configuration, at the indentation of `storage:`'s
children. No secret: the account key and the S3 keys come from the credentials Secret as environment variables
(cr.storage.env), which Distribution reads over its configuration.
*/}}
{{- define "cr.storage.config" -}}
{{- $s := .v.storage }}
{{- if eq $s.type "azure" }}
{{- $a := $s.azure }}
azure:
  accountname: {{ $a.accountName | quote }}
  container: {{ $a.container | quote }}
  realm: {{ $a.realm | quote }}
  {{- with $a.serviceURL }}
  serviceurl: {{ . | quote }}
  {{- end }}
  {{- with $a.rootDirectory }}
  rootdirectory: {{ . | quote }}
  {{- end }}
  credentials:
    type: shared_key
# Blobs are served by the registry, never by a redirect to the store: nodes need not reach it, and the azure
# driver signs its redirects for HTTPS only.
redirect:
  disable: true
{{- else if eq $s.type "s3" }}
{{- $b := $s.s3 }}
s3:
  bucket: {{ $b.bucket | quote }}
  region: {{ $b.region | quote }}
  {{- with $b.regionEndpoint }}
  regionendpoint: {{ . | quote }}
  secure: {{ hasPrefix "https://" . }}
  {{- end }}
  forcepathstyle: {{ $b.forcePathStyle }}
  {{- if $b.skipVerify }}
  skipverify: true
  {{- end }}
  {{- with $b.rootDirectory }}
  rootdirectory: {{ . | quote }}
  {{- end }}
# Blobs are served by the registry, never by a redirect to the store: nodes need not reach it.
redirect:
  disable: true
{{- else }}
filesystem:
  rootdirectory: /var/lib/registry
{{- if eq (include "cr.replicas.shared" .) "true" }}
# Several replicas on one ReadWriteMany volume: the registry answers every blob itself.
redirect:
  disable: true
{{- end }}
{{- end }}
{{- end }}

{{- /* cr.storage.env: the store's credentials and the shared http.secret, for the registry containers. */}}
{{- define "cr.storage.env" -}}
{{- $s := .v.storage }}
{{- if eq $s.type "azure" }}
- name: REGISTRY_STORAGE_AZURE_ACCOUNTKEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.azure.credentialsSecret }}
      key: {{ $s.azure.accountKeyKey }}
{{- else if eq $s.type "s3" }}
- name: REGISTRY_STORAGE_S3_ACCESSKEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.s3.credentialsSecret }}
      key: {{ $s.s3.accessKeyKey }}
- name: REGISTRY_STORAGE_S3_SECRETKEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.s3.credentialsSecret }}
      key: {{ $s.s3.secretKeyKey }}
{{- end }}
{{- if eq (include "cr.replicas.shared" .) "true" }}
# Every replica signs and checks upload state with the same secret.
- name: REGISTRY_HTTP_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "cr.replicas.sharedSecret" . }}
      key: http-secret
{{- end }}
{{- end }}

{{- /* cr.replicas.gateArgs: the parent gate's routing to the owner replica of each blob. */}}
{{- define "cr.replicas.gateArgs" -}}
{{- if eq (include "cr.replicas.peers" .) "true" }}
- --peers={{ include "cr.replicas.peersService" . }}.{{ .root.Release.Namespace }}.svc
- --peer-listen=:{{ include "cr.replicas.peerPort" . }}
{{- end }}
{{- end }}

{{- /* cr.replicas.gateEnv: the pod's address and the peer secret of the parent gate. */}}
{{- define "cr.replicas.gateEnv" -}}
{{- if eq (include "cr.replicas.peers" .) "true" }}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: CONNECTED_REGISTRY_GATE_PEER_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "cr.replicas.sharedSecret" . }}
      key: peer-secret
{{- end }}
{{- end }}

{{- /* cr.replicas.gatePorts: the parent gate's peer port. */}}
{{- define "cr.replicas.gatePorts" -}}
{{- if eq (include "cr.replicas.peers" .) "true" }}
ports:
  - name: peer
    containerPort: {{ include "cr.replicas.peerPort" . }}
    protocol: TCP
{{- end }}
{{- end }}

{{- /* cr.storage.validate: storage and replicas values that contradict each other. */}}
{{- define "cr.storage.validate" -}}
{{- $v := .v }}
{{- $s := $v.storage }}
{{- $n := int $v.replicas }}
{{- if and (ne $s.type "pvc") (eq $v.registry.engine "acr") }}
{{- fail (printf "storage.type=%s needs registry.engine=distribution: Microsoft's connected-registry image keeps its data on the volume only; set storage.type=pvc or registry.engine=distribution" $s.type) }}
{{- end }}
{{- if and (gt $n 1) (eq $v.registry.engine "acr") }}
{{- fail (printf "replicas=%d needs registry.engine=distribution: Microsoft's connected-registry image runs as one replica; set replicas=1 or registry.engine=distribution" $n) }}
{{- end }}
{{- if and (gt $n 1) (eq $s.type "pvc") (ne $v.pvc.accessMode "ReadWriteMany") }}
{{- fail (printf "replicas=%d with storage.type=pvc needs pvc.accessMode=ReadWriteMany (got %s): every replica mounts the one cache volume. Set pvc.accessMode=ReadWriteMany with a storageClassName that provides it (NFS, Azure Files), or use object storage (storage.type=azure or s3), or set replicas=1" $n $v.pvc.accessMode) }}
{{- end }}
{{- if and (gt $n 1) (ne (include "cr.replicas.peers" .) "true") }}
{{- fail (printf "replicas=%d needs the parent gate with shared fetches (registry.parent.responseTimeout other than 0s, registry.parent.shareFetches=true): without it every replica fetches each blob from the parent" $n) }}
{{- end }}
{{- if eq $s.type "azure" }}
{{- if not $s.azure.accountName }}
{{- fail "storage.type=azure needs storage.azure.accountName: the storage account of the cache's container" }}
{{- end }}
{{- if not $s.azure.credentialsSecret }}
{{- fail (printf "storage.type=azure needs storage.azure.credentialsSecret: an existing Secret whose key %s holds the account key (kubectl create secret generic NAME --from-literal=%s=...)" $s.azure.accountKeyKey $s.azure.accountKeyKey) }}
{{- end }}
{{- if or (not (regexMatch "^[a-z0-9](-?[a-z0-9])*$" $s.azure.container)) (lt (len $s.azure.container) 3) (gt (len $s.azure.container) 63) }}
{{- fail (printf "storage.azure.container %q is not a container name: 3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit" $s.azure.container) }}
{{- end }}
{{- end }}
{{- if eq $s.type "s3" }}
{{- if not $s.s3.bucket }}
{{- fail "storage.type=s3 needs storage.s3.bucket: the bucket of the cache" }}
{{- end }}
{{- if not $s.s3.credentialsSecret }}
{{- fail (printf "storage.type=s3 needs storage.s3.credentialsSecret: an existing Secret whose keys %s and %s hold the access key ID and the secret access key" $s.s3.accessKeyKey $s.s3.secretKeyKey) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* cr.storage.preflightArgs: the preflight's object store check (storage.type azure or s3). */}}
{{- define "cr.storage.preflightArgs" -}}
{{- $s := .v.storage }}
{{- if ne $s.type "pvc" }}
- --storage-type={{ $s.type }}
- --storage-create={{ $s.createIfMissing }}
{{- if eq $s.type "azure" }}
- --storage-credentials-secret={{ $s.azure.credentialsSecret }}
- --storage-root-directory={{ $s.azure.rootDirectory }}
- --storage-azure-account={{ $s.azure.accountName }}
- --storage-azure-container={{ $s.azure.container }}
- --storage-azure-service-url={{ $s.azure.serviceURL }}
- --storage-azure-realm={{ $s.azure.realm }}
- --storage-azure-account-key-key={{ $s.azure.accountKeyKey }}
{{- else }}
- --storage-credentials-secret={{ $s.s3.credentialsSecret }}
- --storage-root-directory={{ $s.s3.rootDirectory }}
- --storage-s3-bucket={{ $s.s3.bucket }}
- --storage-s3-region={{ $s.s3.region }}
- --storage-s3-region-endpoint={{ $s.s3.regionEndpoint }}
- --storage-s3-force-path-style={{ $s.s3.forcePathStyle }}
- --storage-s3-skip-verify={{ $s.s3.skipVerify }}
- --storage-s3-access-key-key={{ $s.s3.accessKeyKey }}
- --storage-s3-secret-key-key={{ $s.s3.secretKeyKey }}
{{- end }}
{{- end }}
{{- end }}

{{- /* cr.storage.credentialsSecret: the object store's credentials Secret, empty with storage.type pvc. */}}
{{- define "cr.storage.credentialsSecret" -}}
{{- if eq .v.storage.type "azure" }}{{ .v.storage.azure.credentialsSecret }}{{ else if eq .v.storage.type "s3" }}{{ .v.storage.s3.credentialsSecret }}{{ end }}
{{- end }}
