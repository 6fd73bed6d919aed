{{- /*
Added by connected-registry's extension bundle (make extension-bundle) to the cert-manager chart it stages: the
Azure Marketplace's packaging tool relocates only the images of global.azure.images, so every cert-manager image
reference reads its entry there when global.azure.images is set (the parent chart fails the render when one is
missing). Argument: (list $ "<entry>" <image values>); returns image values for cert-manager.image, as JSON.
*/ -}}
{{- define "cert-manager.azureImage" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $images := ((($root.Values.global | default dict).azure | default dict).images) | default dict -}}
{{- if $images -}}
{{- $e := get $images $name | default dict -}}
{{- if not (and $e.registry $e.image $e.digest) -}}
{{- fail (printf "cert-manager.install=true with global.azure.images set runs cert-manager's images from it by digest, but global.azure.images.%s lacks registry, image or digest: give it, or set cert-manager.install=false to use the cluster's cert-manager" $name) -}}
{{- end -}}
{{- toJson (dict "repository" (printf "%s/%s" (trimSuffix "/" $e.registry) $e.image) "digest" $e.digest) -}}
{{- else -}}
{{- toJson (index . 2) -}}
{{- end -}}
{{- end -}}
