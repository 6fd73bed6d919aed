{{/*
cr.certManagerHook: with cert-manager.install=true the chart installs cert-manager's CRDs and webhook in the same
release, so our Issuers and Certificates are created after them, as post-install/post-upgrade hooks ordered after
cert-manager's own startupapicheck (weight 1), which waits for the webhook. With install=false they are plain
resources of the release. Argument: the context of cr.values.
*/}}
{{- define "cr.certManagerHook" -}}
{{- if (index .v "cert-manager").install -}}
helm.sh/hook: post-install,post-upgrade
helm.sh/hook-weight: "10"
helm.sh/hook-delete-policy: before-hook-creation
{{- end }}
{{- end }}

{{- define "cr.certManagerPrivateKey" -}}
{{- $tls := .v.tls -}}
algorithm: {{ $tls.keyAlgorithm }}
size: {{ $tls.keySize }}
rotationPolicy: Always
{{- end }}
