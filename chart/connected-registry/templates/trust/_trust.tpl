{{/* cr.trustEnabled: "true" when the chart renders the node agent. */}}
{{- define "cr.trustEnabled" -}}
{{- $td := (include "cr.values" . | fromJson).trustDistribution | default dict }}
{{- and (ne (toString $td.enabled) "false") true }}
{{- end }}

{{/* cr.trustHost: the address nodes pull from, <clusterIP>:443; containerd's certs.d directory is named so. */}}
{{- define "cr.trustHost" -}}
{{- printf "%s:443" (include "cr.values" . | fromJson).service.clusterIP }}
{{- end }}

{{/* cr.trustOwner: what the agent writes into its marker, and the only owner whose entry it removes. */}}
{{- define "cr.trustOwner" -}}
{{- printf "%s/%s" .Release.Namespace .Release.Name }}
{{- end }}

{{/* cr.apiTokenVolume: a short-lived API token mounted explicitly, for ServiceAccounts that do not automount. */}}
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
