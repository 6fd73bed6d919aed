{{/*
cr.validate fails the render on contradictory or missing values. Each message names the keys involved and the
fix. Argument: the context (dict "v" $v "root" $) of cr.values.

Where a rule lives:
- values.schema.json (from the @schema comments of values.yaml): the shape of each value: types, enums,
  patterns and formats. Helm checks it before any template runs, so a rule it holds is not repeated here.
- here: rules across values, required values, and what a render can tell about a value that the schema cannot
  say with a message naming the fix (typographic quotes, base64 applied twice, the connection string's fields).
- the preflight hook (Go): what needs the cluster or cryptography: the certificates themselves, the Secret, the
  service CIDR, storage classes, nodes.
*/}}
{{- define "cr.validate" -}}
{{- $v := .v }}
{{- $root := .root }}
{{- $tls := $v.tls | default dict }}
{{- $cm := index $v "cert-manager" | default dict }}
{{- $td := $v.trustDistribution | default dict }}

{{- /* Sizes first: megabytes pasted by mistake would otherwise fail on Kubernetes' own 1 MiB limit of the preflight's
Secret, with a message that names neither the value nor a cap, after the hooks' RBAC already exists. The caps match
the preflight's (internal/tlscheck: a 16k-bit RSA key; a chain of 10 large certificates), base64-encoded. */}}
{{- $caps := dict
  "connectionString" (list $v.connectionString 4096 "a connection string is a few hundred characters: copy the output of `az acr connected-registry get-settings` again")
  "tls.crt" (list $tls.crt 90000 "give only the serving certificate and its intermediates, base64-encoded once")
  "tls.key" (list $tls.key 18000 "give only the serving certificate's private key, base64-encoded once")
  "tls.cacrt" (list $tls.cacrt 90000 "give only the CA that issued the serving certificate, base64-encoded once")
  "registry.parent.caBundle" (list $v.registry.parent.caBundle 262144 "give only the CAs the parent's certificate chains to")
  "Azure.proxySettings.proxyCert" (list (($v.Azure | default dict).proxySettings | default dict).proxyCert 262144 "give only the proxy's CA certificate") }}
{{- range $key := keys $caps | sortAlpha }}
{{- $c := get $caps $key }}
{{- $n := len (toString (index $c 0 | default "")) }}
{{- if gt $n (index $c 1) }}
{{- fail (printf "%s is %d characters, more than the %d the chart accepts: %s" $key $n (index $c 1) (index $c 2)) }}
{{- end }}
{{- end }}

{{- /* Typographic quotes copied from a document: checked next, since they break every other check. Keys whose
schema pattern or format admits no quote (service.clusterIP, pvc.storageRequest) never get here with one. */}}
{{- $quoted := dict
  "connectionString" $v.connectionString
  "tls.secret" $tls.secret
  "tls.crt" $tls.crt
  "tls.key" $tls.key
  "tls.cacrt" $tls.cacrt
  "pvc.storageClassName" $v.pvc.storageClassName
  "registry.parent.url" $v.registry.parent.url
  "registry.parent.credentialsSecret" $v.registry.parent.credentialsSecret
  "registry.clientAuthSecret" $v.registry.clientAuthSecret
  "sync.credentialsSecret" ($v.sync | default dict).credentialsSecret }}
{{- range $key := keys $quoted | sortAlpha }}
{{- $val := toString (get $quoted $key) }}
{{- if regexMatch "[“”‘’„‟«»]" $val }}
{{- if eq $key "connectionString" }}
{{- fail (printf "connectionString contains typographic quotes (“ ” ‘ ’), probably copied from a document: give the connection string with plain ASCII quotes or none") }}
{{- else if eq $key "tls.key" }}
{{- /* A private key: the message never shows it. */}}
{{- fail "tls.key contains typographic quotes (“ ” ‘ ’), probably copied from a document: give the output of `base64 -w0 <key file>` without them" }}
{{- else }}
{{- fail (printf "%s contains typographic quotes (%s), probably copied from a document: write it as %s=%s" $key $val $key (regexReplaceAll "[“”‘’„‟«»]" $val "")) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* A cert-manager in the cluster that this release did not install clashes with install=true. Helm would stop
at the first of its CRDs with an ownership error before any hook runs, so the render says it plainly. lookup is
empty offline (helm template), where the preflight hook checks the same on a live cluster. */}}
{{- if $cm.install }}
{{- $crd := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "certificates.cert-manager.io" }}
{{- if $crd }}
{{- $owner := (($crd.metadata).annotations | default dict) }}
{{- if not (and (eq (get $owner "meta.helm.sh/release-name") $root.Release.Name) (eq (get $owner "meta.helm.sh/release-namespace") $root.Release.Namespace)) }}
{{- fail (printf "cert-manager is already installed (the API cert-manager.io/v1 is served), and cert-manager.install=true would install it a second time: set cert-manager.install=false to use the one in the cluster (its CRD certificates.cert-manager.io belongs to %s)" (ternary (printf "release %s/%s" (get $owner "meta.helm.sh/release-namespace") (get $owner "meta.helm.sh/release-name")) "no Helm release" (hasKey $owner "meta.helm.sh/release-name"))) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* cert-manager.install is a dependency condition: Helm reads only its nested form. */}}
{{- if hasKey $root.Values "cert-manager.install" }}
{{- if ne (toString (index $root.Values "cert-manager.install")) (toString (index $root.Values "cert-manager" | default dict).install) }}
{{- fail (printf "cert-manager.install was given as a flat key (%v), but Helm decides whether to install the cert-manager dependency from the nested value before any template runs: pass it as --set cert-manager.install=%v (or nested YAML) instead" (index $root.Values "cert-manager.install") (index $root.Values "cert-manager.install")) }}
{{- end }}
{{- end }}

{{- /* podLabels go beside the chart's own labels, selectors among them. */}}
{{- range $k, $_ := $v.podLabels }}
{{- if or (hasPrefix "app.kubernetes.io/" $k) (hasPrefix "helm.sh/" $k) }}
{{- fail (printf "podLabels.%s: labels under app.kubernetes.io/ and helm.sh/ are the chart's own (some select the release's pods); choose another key, for example site.example.com/%s" $k (base $k)) }}
{{- end }}
{{- end }}

{{- /* Required values. */}}
{{- if not $v.service.clusterIP }}
{{- fail "service.clusterIP is required: set it to a free address inside the cluster's service CIDR, for example --set service.clusterIP=10.96.0.50 (nodes pull from <clusterIP>:443)" }}
{{- end }}
{{- if and (not $v.connectionString) (not $v.registry.parent.url) }}
{{- fail "connectionString is required: set it to the output of `az acr connected-registry get-settings` (ConnectedRegistryName=…;SyncTokenName=…;SyncTokenPassword=…;ParentGatewayEndpoint=…;ParentEndpointProtocol=https), or name a parent with registry.parent.url" }}
{{- end }}
{{- if $v.connectionString }}
{{- if regexMatch "\\s" (trim $v.connectionString) }}
{{- fail "connectionString contains whitespace (a space, tab or line break between its fields), probably from copying it across lines: give it as one line, exactly as `az acr connected-registry get-settings` prints it" }}
{{- end }}
{{- $f := include "cr.connectionFields" . | fromJson }}
{{- range $field := list "ConnectedRegistryName" "SyncTokenName" "SyncTokenPassword" "ParentGatewayEndpoint" "ParentEndpointProtocol" }}
{{- if not (get $f $field) }}
{{- fail (printf "connectionString lacks a value for %s: copy the whole connection string from `az acr connected-registry get-settings --generate-password 1`" $field) }}
{{- end }}
{{- end }}
{{- if regexMatch "^[a-zA-Z]+://|/" (get $f "ParentGatewayEndpoint") }}
{{- fail (printf "connectionString has ParentGatewayEndpoint=%s, but it takes a host[:port] without scheme or path (like myregistry.eastus.data.azurecr.io); the scheme goes in ParentEndpointProtocol" (get $f "ParentGatewayEndpoint")) }}
{{- end }}
{{- if not (has (get $f "ParentEndpointProtocol" | lower) (list "http" "https")) }}
{{- fail (printf "connectionString has ParentEndpointProtocol=%s: use https (or http for a parent without TLS)" (get $f "ParentEndpointProtocol")) }}
{{- end }}
{{- end }}
{{- if and (eq $v.registry.engine "acr") (not $v.connectionString) }}
{{- fail "registry.engine=acr needs connectionString: Microsoft's connected-registry image syncs with the parent named by it" }}
{{- end }}

{{- /* Exactly one TLS source. */}}
{{- if and $tls.secret (or $tls.crt $tls.key $tls.cacrt) }}
{{- fail "tls.secret and tls.crt/tls.key/tls.cacrt both choose the registry certificate: keep tls.secret to use the existing Secret, or remove it to use the certificate given in tls.crt" }}
{{- end }}
{{- if and (or $tls.secret $tls.crt $tls.key $tls.cacrt) $cm.enabled }}
{{- $key := ternary "tls.secret" "tls.crt" (not (empty $tls.secret)) }}
{{- fail (printf "%s and cert-manager.enabled=true both choose the registry certificate: set cert-manager.enabled=false (and cert-manager.install=false) to use your own certificate, or remove %s to let cert-manager issue one" $key $key) }}
{{- end }}
{{- /* tls.secret names a Secret of the release namespace, which a pod can mount. When it is not there but another
namespace has one of that name, say so. lookup runs with the installing user's own credentials and is empty
offline (helm template); the other namespaces are read only when the Secret is missing. */}}
{{- if and $tls.secret (not (lookup "v1" "Secret" $root.Release.Namespace (toString $tls.secret))) }}
{{- $found := list }}
{{- range (lookup "v1" "Namespace" "" "").items | default list }}
{{- if and (ne .metadata.name $root.Release.Namespace) (lookup "v1" "Secret" .metadata.name (toString $tls.secret)) }}
{{- $found = append $found .metadata.name }}
{{- end }}
{{- end }}
{{- with $found }}
{{- fail (printf "tls.secret names Secret %s, which is not in the release namespace %s but exists in namespace %s: a pod mounts only Secrets of its own namespace, so copy it into %s (kubectl get secret %s -n %s -o yaml, without its namespace and uid, then kubectl apply -n %s), or install the release into %s" $tls.secret $root.Release.Namespace (join ", " .) $root.Release.Namespace $tls.secret (first .) $root.Release.Namespace (first .)) }}
{{- end }}
{{- end }}
{{- if and $tls.crt (not $tls.key) }}
{{- fail "tls.crt is set without tls.key: give the certificate's private key as base64 of its PEM in tls.key" }}
{{- end }}
{{- if and $tls.key (not $tls.crt) }}
{{- fail "tls.key is set without tls.crt: give the certificate as base64 of its PEM in tls.crt" }}
{{- end }}
{{- if and $tls.cacrt (not $tls.crt) }}
{{- fail "tls.cacrt is set without tls.crt and tls.key: give the serving certificate and its key as well, or use tls.secret" }}
{{- end }}
{{- range $key := list "crt" "key" "cacrt" }}
{{- $raw := get $tls $key | default "" | toString }}
{{- if $raw }}
{{- $b64 := regexReplaceAll "\\s" $raw "" }}
{{- if not (regexMatch "^[A-Za-z0-9+/]+={0,2}$" $b64) }}
{{- if contains "-----BEGIN" $raw }}
{{- fail (printf "tls.%s holds PEM text, but the chart expects it base64-encoded: give the output of `base64 -w0 <file>`" $key) }}
{{- end }}
{{- fail (printf "tls.%s is not valid base64: give the output of `base64 -w0 <file>` of the PEM file" $key) }}
{{- end }}
{{- $pem := b64dec $b64 }}
{{- if hasPrefix "LS0tLS1CRUdJTi" $pem }}
{{- fail (printf "tls.%s is base64-encoded twice: decode it once (`base64 -d`) and give the result" $key) }}
{{- end }}
{{- if not (contains "-----BEGIN " $pem) }}
{{- fail (printf "tls.%s decodes to something that is not PEM (no \"-----BEGIN\" line): give base64 of the PEM file" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* cert-manager must be there when the chart does not install it. */}}
{{- if and $cm.enabled (not $cm.install) (not ($root.Capabilities.APIVersions.Has "cert-manager.io/v1")) }}
{{- fail "cert-manager.enabled=true with cert-manager.install=false needs cert-manager in the cluster, but the API cert-manager.io/v1 is not served: install cert-manager first, or set cert-manager.install=true, or choose another TLS source (tls.secret, tls.crt, or cert-manager.enabled=false for generated certificates). With `helm template`, pass --api-versions cert-manager.io/v1" }}
{{- end }}

{{- /* global.azure.images (the extension bundle): cert-manager's images, when the chart installs it, come from it too,
through the bundle's cert-manager subchart (our own images fail in cr.imageRef when their entry is missing). */}}
{{- $azureImages := include "cr.azureImages" . | fromJson }}
{{- if and $azureImages $cm.install }}
{{- $missing := list }}
{{- range $name := list "certManagerController" "certManagerWebhook" "certManagerCainjector" "certManagerAcmesolver" "certManagerStartupapicheck" }}
{{- if not (get $azureImages $name) }}{{ $missing = append $missing (printf "global.azure.images.%s" $name) }}{{ end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "cert-manager.install=true with global.azure.images set runs cert-manager's images from it by digest, but %s %s missing: give them, or set cert-manager.install=false to use the cluster's cert-manager" (join ", " $missing) (ternary "is" "are" (eq (len $missing) 1))) }}
{{- end }}
{{- end }}

{{- /* The node-selector switch and its older name. */}}
{{- if and (kindIs "bool" $td.skipNodeSelector) $td.skipNodeSelector $td.useNodeSelector }}
{{- fail "trustDistribution.useNodeSelector=true contradicts trustDistribution.skipNodeSelector=true (its older, inverted name): set only useNodeSelector" }}
{{- end }}

{{- /* Registry engine and mode. */}}
{{- if and (eq $v.registry.mode "ReadWrite") (eq $v.registry.engine "distribution") }}
{{- fail "registry.mode=ReadWrite needs registry.engine=acr: Distribution's pull-through cache (registry.engine=distribution) cannot accept pushes; use registry.mode=ReadOnly" }}
{{- end }}
{{- if and $v.registry.parent.credentialsSecret (not $v.registry.parent.url) }}
{{- fail "registry.parent.credentialsSecret is set without registry.parent.url: name the parent the credentials are for, or remove it to use the connection string's sync token" }}
{{- end }}
{{- if and $v.httpEnabled (eq $v.registry.engine "acr") }}
{{- fail "httpEnabled=true with registry.engine=acr is not supported by this chart: the acr engine serves one port; use registry.engine=distribution" }}
{{- end }}

{{- /* The scheduled pre-sync (templates/sync/_sync.tpl). */}}
{{- include "cr.sync.validate" . }}
{{- include "cr.cache.validate" . }}

{{- /* Client authentication. */}}
{{- $ct := $v.clientTokens | default dict }}
{{- if $ct.enabled }}
{{- if eq $v.registry.engine "acr" }}
{{- fail "clientTokens.enabled=true with registry.engine=acr: Microsoft's image takes its client tokens from ACR itself; use registry.engine=distribution, or set clientTokens.enabled=false" }}
{{- end }}
{{- if $v.registry.clientAuthSecret }}
{{- fail "clientTokens.enabled=true and registry.clientAuthSecret both choose how clients authenticate, and the registry takes one: keep client tokens (remove registry.clientAuthSecret), or set clientTokens.enabled=false to keep htpasswd" }}
{{- end }}
{{- if and $ct.pullSecret.namespaces (not $ct.pullSecret.credentialsSecret) }}
{{- fail "clientTokens.pullSecret.namespaces needs clientTokens.pullSecret.credentialsSecret: the name of a Secret in the release's namespace with the keys username and password of the client token the pull Secrets hold (the password never goes in the values)" }}
{{- end }}
{{- if not $ct.secret }}
{{- fail "clientTokens.enabled=true needs clientTokens.secret: the name of a Secret in the release's namespace with one key per client token (see the chart README, Client tokens)" }}
{{- end }}
{{- if regexMatch "^([0-9]+(\\.[0-9]+)?s)$" (toString $ct.tokenLifetime) }}
{{- if lt (float64 (trimSuffix "s" (toString $ct.tokenLifetime))) 90.0 }}
{{- fail (printf "clientTokens.tokenLifetime=%s is shorter than 90s: the registry accepts a token up to 60s after its expiry claim, which must not lie before its issue; use 90s or more (5m is the default)" $ct.tokenLifetime) }}
{{- end }}
{{- else if regexMatch "^[0-9]+m$" (toString $ct.tokenLifetime) }}
{{- if lt (int (trimSuffix "m" (toString $ct.tokenLifetime))) 2 }}
{{- fail (printf "clientTokens.tokenLifetime=%s is shorter than 90s: the registry accepts a token up to 60s after its expiry claim, which must not lie before its issue; use 90s or more (5m is the default)" $ct.tokenLifetime) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not $ct.enabled) ($ct.pullSecret | default dict).namespaces }}
{{- fail "clientTokens.pullSecret.namespaces is set with clientTokens.enabled=false: pull Secrets hold a client token; set clientTokens.enabled=true, or remove clientTokens.pullSecret.namespaces" }}
{{- end }}
{{- if and $v.httpEnabled (or $ct.enabled $v.registry.clientAuthSecret) (not $v.allowCredentialsOverHTTP) }}
{{- $auth := ternary "clientTokens.enabled=true" "registry.clientAuthSecret" (not (empty $ct.enabled)) }}
{{- fail (printf "httpEnabled=true with %s would carry clients' credentials over plain HTTP on port 80: set httpEnabled=false (clients use HTTPS on 443), or set allowCredentialsOverHTTP=true to accept that" $auth) }}
{{- end }}
{{- if and ($v.networkPolicy | default dict).enabled (not $v.networkPolicy.nodeCIDRs) }}
{{- fail "networkPolicy.enabled=true needs networkPolicy.nodeCIDRs: list the address ranges of the cluster's nodes (containerd pulls from them), for example --set networkPolicy.nodeCIDRs={10.0.0.0/16}" }}
{{- end }}
{{- include "cr.storage.validate" . }}
{{- end }}
