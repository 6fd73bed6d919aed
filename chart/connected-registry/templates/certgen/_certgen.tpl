{{/*
cr.certgenPodTemplate: the pod of the certgen hook Job and of its renewal CronJob. Argument: (list $ "<ServiceAccount>")
*/}}
{{- define "cr.certgenPodTemplate" -}}
{{- $sa := index . 1 }}
{{- with index . 0 }}
{{- $v := include "cr.values" . | fromJson }}
template:
  metadata:
    labels:
      {{- include "cr.selectorLabels" (list . "certgen") | nindent 6 }}
  spec:
    serviceAccountName: {{ $sa }}
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
        image: {{ include "cr.hooksImage" . }}
        imagePullPolicy: {{ $v.hooks.image.pullPolicy }}
        args:
          - certgen
          - --namespace={{ .Release.Namespace }}
          - --secret={{ include "cr.tlsSecretName" . }}
          - --ca-secret={{ include "cr.tlsSecretName" . }}-ca
          - --ip={{ $v.service.clusterIP }}
          - --dns={{ include "cr.serviceDNSNames" . | fromJsonArray | join "," }}
          - --key-algorithm={{ $v.tls.keyAlgorithm }}
          - --key-size={{ $v.tls.keySize }}
          - --duration={{ $v.tls.duration }}
          - --log-level={{ $v.logLevel }}
          - --timeout=90s
        terminationMessagePolicy: FallbackToLogsOnError
        securityContext:
          {{- include "cr.restrictedContainerSecurityContext" . | nindent 10 }}
        resources:
          {{- toYaml $v.hooks.resources | nindent 10 }}
        volumeMounts:
          - name: token
            mountPath: /var/run/secrets/kubernetes.io/serviceaccount
            readOnly: true
    volumes:
      # The API token, mounted explicitly: the ServiceAccount does not automount it.
      - name: token
        projected:
          sources:
            - serviceAccountToken:
                path: token
                expirationSeconds: 600
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
{{- end }}
