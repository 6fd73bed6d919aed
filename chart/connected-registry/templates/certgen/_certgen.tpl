{{/*
cr.certgenPodTemplate: the pod of the certgen hook Job and of its renewal CronJob.
Argument: (list $ctx "<ServiceAccount>"), $ctx the context of cr.values.
*/}}
{{- define "cr.certgenPodTemplate" -}}
{{- $sa := index . 1 }}
{{- $ctx := index . 0 }}
{{- $v := $ctx.v }}
{{- with $ctx.root -}}
template:
  metadata:
    labels:
      {{- include "cr.selectorLabels" (list . "certgen") | nindent 6 }}
      {{- with include "cr.podLabels" $ctx }}
      {{- . | nindent 6 }}
      {{- end }}
    {{- with include "cr.podAnnotations" $ctx }}
    annotations:
      {{- . | nindent 6 }}
    {{- end }}
  spec:
    serviceAccountName: {{ $sa }}
    {{- with include "cr.podSpecExtras" $ctx }}
    {{- . | nindent 4 }}
    {{- end }}
    restartPolicy: Never
    securityContext:
      runAsNonRoot: true
      runAsUser: 65532
      runAsGroup: 65532
      seccompProfile:
        type: RuntimeDefault
    {{- with $v.registry.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.registry.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      - name: certgen
        image: {{ include "cr.image" $ctx }}
        imagePullPolicy: {{ $v.image.pullPolicy }}
        args:
          - certgen
          - --namespace={{ .Release.Namespace }}
          - --secret={{ include "cr.tlsSecretName" $ctx }}
          - --ca-secret={{ include "cr.tlsSecretName" $ctx }}-ca
          - --ip={{ $v.service.clusterIP }}
          - --dns={{ include "cr.serviceDNSNames" . | fromJsonArray | join "," }}
          - --key-algorithm={{ $v.tls.keyAlgorithm }}
          - --key-size={{ $v.tls.keySize }}
          - --duration={{ $v.tls.duration }}
          - --log-level={{ $v.logLevel }}
          - --timeout=90s
        {{- with include "cr.extraEnv" $ctx }}
        env:
          {{- . | nindent 10 }}
        {{- end }}
        terminationMessagePolicy: FallbackToLogsOnError
        securityContext:
          {{- include "cr.restrictedContainerSecurityContext" . | nindent 10 }}
        resources:
          {{- toYaml $v.hooks.resources | nindent 10 }}
        volumeMounts:
          {{- include "cr.apiTokenMount" . | nindent 10 }}
    volumes:
      {{- include "cr.apiTokenVolume" 600 | nindent 6 }}
{{- end }}
{{- end }}
