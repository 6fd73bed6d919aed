{{/*
The bounded cache (registry.cache.maxSize). Its CronJob's pod runs a Distribution of its own on its loopback, on the
registry's storage, without proxy mode and with delete enabled; the eviction deletes manifests through it, then
Distribution's garbage collection frees the blobs no manifest left names.
*/}}

{{- /* cr.cache.enabled is "true" when registry.cache.maxSize bounds the cache. Argument: the context of cr.values. */}}
{{- define "cr.cache.enabled" -}}
{{- and (ne .v.registry.engine "acr") (not (empty (toString (.v.registry.cache.maxSize | default "")))) }}
{{- end }}

{{- /*
cr.cache.onVolume is "true" when the registry's cache is on the PVC (the pvc storage), which the parent gate mounts
read-only to refuse a blob it cannot hold. Argument: the context of cr.values.
*/}}
{{- define "cr.cache.onVolume" -}}
{{- and (ne .v.registry.engine "acr") (eq ((.v.storage | default dict).type | default "pvc") "pvc") }}
{{- end }}

{{- /* cr.cache.registryAddr: the eviction Job's own registry, on its pod's loopback only. */}}
{{- define "cr.cache.registryAddr" -}}
127.0.0.1:5002
{{- end }}

{{- /* cr.cache.validate fails the render on a bad registry.cache value. Argument: the context of cr.values. */}}
{{- define "cr.cache.validate" -}}
{{- $c := .v.registry.cache }}
{{- with toString ($c.maxSize | default "") }}
{{- if eq $.v.registry.engine "acr" }}
{{- fail "registry.cache.maxSize needs registry.engine=distribution: Microsoft's connected-registry image (registry.engine=acr) manages its own storage; leave registry.cache.maxSize empty" }}
{{- end }}
{{- if not (regexMatch `^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$` .) }}
{{- fail (printf "registry.cache.maxSize %q is not a size: give a quantity such as 400Gi, below pvc.storageRequest, or leave it empty to keep everything" .) }}
{{- end }}
{{- if not (regexMatch "[1-9]" .) }}
{{- fail (printf "registry.cache.maxSize %q is zero: give a quantity such as 400Gi, below pvc.storageRequest, or leave it empty to keep everything" .) }}
{{- end }}
{{- if ne (include "cr.parentGate" $) "true" }}
{{- fail "registry.cache.maxSize needs the parent gate, which records the pulls the eviction orders images by: set registry.parent.responseTimeout to a duration other than 0s (1500ms by default)" }}
{{- end }}
{{- with include "cr.sync.scheduleProblem" $c.schedule }}
{{- fail (printf "registry.cache.schedule %q is not a cron schedule: %s; for example \"30 3 * * *\" (every day at 03:30 UTC)" (toString $c.schedule) .) }}
{{- end }}
{{- end }}
{{- end }}

{{- /*
cr.cache.registryConfig: the eviction Job's Distribution configuration. Its storage is the registry's own
(cr.registry.configMap's storage block, whatever the driver), with delete enabled and without the read-only
maintenance mode or the blob descriptor cache; it serves plain HTTP on the pod's loopback, with no proxy, so it holds
exactly what is stored. Argument: the context of cr.values.
*/}}
{{- define "cr.cache.registryConfig" -}}
{{- $cm := include "cr.registry.configMap" . | fromYaml }}
{{- $running := index $cm.data "config.yml" | fromYaml }}
{{- $storage := deepCopy $running.storage }}
{{- $_ := unset $storage "maintenance" }}
{{- $_ := unset $storage "cache" }}
{{- $_ := set $storage "delete" (dict "enabled" true) }}
version: 0.1
log:
  level: {{ .v.registry.logLevel }}
  formatter: text
  fields:
    service: connected-registry-cache-evict
storage:
  {{- toYaml $storage | nindent 2 }}
http:
  addr: {{ include "cr.cache.registryAddr" . }}
  net: tcp
{{- end }}
