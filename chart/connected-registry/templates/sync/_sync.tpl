{{/*
The scheduled pre-sync's checks. The binary (internal/presync) checks the same values again with the same messages,
since its flags may be given by hand; internal/presync/testdata/validation.json holds the cases both are tested
against. Each message names the key and gives an example.
*/}}

{{- /* cr.sync.validate fails the render on a bad sync value. Argument: the context of cr.values. */}}
{{- define "cr.sync.validate" -}}
{{- $s := .v.sync | default dict }}
{{- if $s.enabled }}
{{- if eq .v.registry.engine "acr" }}
{{- fail "sync.enabled=true needs registry.engine=distribution: Microsoft's connected-registry image (registry.engine=acr) syncs the repositories of its sync token itself, on the schedule of its connected-registry resource" }}
{{- end }}
{{- if and (.v.clientTokens | default dict).enabled (not $s.credentialsSecret) }}
{{- fail "sync.enabled=true with clientTokens.enabled=true needs sync.credentialsSecret: the registry takes only client tokens, so name a Secret with the keys username (a client token's name) and password (its password) of a token whose scope reads the sync.repositories" }}
{{- end }}
{{- if and .v.registry.clientAuthSecret (not $s.credentialsSecret) }}
{{- fail "sync.enabled=true with registry.clientAuthSecret needs sync.credentialsSecret: the registry requires clients to authenticate, so name a Secret with the username and password (an entry of the htpasswd file) the sync pulls with" }}
{{- end }}
{{- if not $s.repositories }}
{{- fail "sync.enabled=true needs sync.repositories: list the repositories the site must hold, for example [{name: hello-world, tags: [latest]}]" }}
{{- end }}
{{- with include "cr.sync.scheduleProblem" $s.schedule }}
{{- fail (printf "sync.schedule %q is not a cron schedule: %s; for example \"0 2 * * *\" (every day at 02:00 UTC) or \"* * * * *\" (every minute)" (toString $s.schedule) .) }}
{{- end }}
{{- with include "cr.sync.windowProblem" ($s.window | default "") }}
{{- fail (printf "sync.window %q is not an ISO-8601 duration: %s; for example PT3H (3 hours), P1D (1 day) or PT30M (30 minutes), or empty for no limit" (toString $s.window) .) }}
{{- end }}
{{- with $s.bandwidth }}
{{- $bw := toString . }}
{{- if not (regexMatch `^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|k|M|G)?$` $bw) }}
{{- fail (printf "sync.bandwidth %q is not a rate in bytes per second: give a quantity such as 20Mi (20 MiB/s) or 12.5M (a 100 Mbit/s link), or leave it empty for no cap" $bw) }}
{{- else if not (regexMatch "[1-9]" $bw) }}
{{- fail (printf "sync.bandwidth %q is not a rate in bytes per second: it is zero, or leave it empty for no cap" $bw) }}
{{- end }}
{{- end }}
{{- $seen := dict }}
{{- range $i, $r := $s.repositories }}
{{- $item := printf "sync.repositories[%d]" $i }}
{{- $name := toString ($r.name | default "") }}
{{- with include "cr.sync.nameProblem" $name }}
{{- fail (printf "%s.name %q is not a repository name: %s; for example \"hello-world\" or \"library/nginx\", as the parent names it, without the parent's host" $item $name .) }}
{{- end }}
{{- $given := list }}
{{- if $r.tags }}{{ $given = append $given "tags" }}{{ end }}
{{- if $r.tagRegex }}{{ $given = append $given "tagRegex" }}{{ end }}
{{- if $r.semver }}{{ $given = append $given "semver" }}{{ end }}
{{- $latest := int ($r.latest | default 0) }}
{{- if and (not $given) (not $latest) }}
{{- fail (printf "%s (%q) selects no tags: give tags (a list), tagRegex, semver or latest; for example tags: [\"latest\"]" $item $name) }}
{{- end }}
{{- if gt (len $given) 1 }}
{{- fail (printf "%s (%q) has both %s and %s: give one of tags, tagRegex and semver (latest may narrow tagRegex or semver)" $item $name (index $given 0) (index $given 1)) }}
{{- end }}
{{- if and $r.tags $latest }}
{{- fail (printf "%s (%q) has both tags and latest: latest narrows tagRegex or semver to the highest versions, not a list of tags" $item $name) }}
{{- end }}
{{- range $j, $t := ($r.tags | default list) }}
{{- if not (regexMatch `^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$` (toString $t)) }}
{{- fail (printf "%s.tags[%d] %q is not a tag: use up to 128 letters, digits, \".\", \"_\" and \"-\", not starting with \".\" or \"-\"; for example \"1.25\" or \"latest\"" $item $j (toString $t)) }}
{{- end }}
{{- end }}
{{- with $r.tagRegex }}
{{- /* regexMatch answers false for a pattern that does not compile. P| compiles exactly when P does (P's own
unclosed groups and classes stay unclosed, its extra ")" stays extra), and then matches "": the empty alternative.
A trailing backslash would escape the "|", and the result then needs a literal "|" to match. */}}
{{- if not (regexMatch (printf "%s|" .) "") }}
{{- fail (printf "%s.tagRegex %q is not a regular expression in Go's RE2 syntax; for example ^v1\\.[0-9]+$ (v1.0, v1.1, …) or ^[0-9]+\\.[0-9]+\\.[0-9]+$" $item .) }}
{{- end }}
{{- end }}
{{- with $r.semver }}
{{- if not (include "cr.sync.semverValid" .) }}
{{- fail (printf "%s.semver %q is not a semver range in Masterminds/semver v3 syntax; for example \">=1.25 <1.27\", \"~1.25\" (1.25.x) or \"^2\" (2.x)" $item .) }}
{{- end }}
{{- end }}
{{- range $j, $p := ($r.platforms | default list) }}
{{- if not (regexMatch `^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$` (toString $p)) }}
{{- fail (printf "%s.platforms[%d] %q is not a platform: give os/architecture or os/architecture/variant; for example linux/amd64 or linux/arm/v7" $item $j (toString $p)) }}
{{- end }}
{{- end }}
{{- if hasKey $seen $name }}
{{- fail (printf "%s names %q again, as %s does: give each repository once" $item $name (get $seen $name)) }}
{{- end }}
{{- $_ := set $seen $name $item }}
{{- end }}
{{- end }}
{{- end }}

{{- /* cr.sync.scheduleProblem says why a cron schedule is refused, or nothing. Argument: the schedule. */}}
{{- define "cr.sync.scheduleProblem" -}}
{{- $s := trim (toString .) }}
{{- $descriptors := list "@yearly" "@annually" "@monthly" "@weekly" "@daily" "@midnight" "@hourly" }}
{{- if eq $s "" }}it is empty
{{- else if or (hasPrefix "TZ=" $s) (hasPrefix "CRON_TZ=" $s) }}it sets a time zone, but schedules run in UTC
{{- else if hasPrefix "@" $s }}
{{- if not (has $s $descriptors) }}of the @ shorthands only @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly are accepted{{ end }}
{{- else }}
{{- $fields := regexSplit `\s+` $s -1 }}
{{- if ne (len $fields) 5 }}it has {{ len $fields }} fields, not 5 (minute, hour, day-of-month, month, day-of-week)
{{- else }}
{{- $specs := list (list "minute" 0 59) (list "hour" 0 23) (list "day-of-month" 1 31) (list "month" 1 12) (list "day-of-week" 0 6) }}
{{- $problem := "" }}
{{- range $i, $f := $fields }}
{{- if not $problem }}{{ $problem = include "cr.sync.cronFieldProblem" (list (index $specs $i) $f) }}{{ end }}
{{- end }}
{{- $problem }}
{{- end }}
{{- end }}
{{- end }}

{{- /* cr.sync.cronFieldProblem checks one field as robfig/cron v3, the CronJob controller's parser, reads it.
Argument: (list (list name min max) field). */}}
{{- define "cr.sync.cronFieldProblem" -}}
{{- $spec := index . 0 }}
{{- $field := index . 1 }}
{{- $name := index $spec 0 }}
{{- $min := int (index $spec 1) }}
{{- $max := int (index $spec 2) }}
{{- $names := dict }}
{{- if eq $name "month" }}
{{- $names = dict "jan" 1 "feb" 2 "mar" 3 "apr" 4 "may" 5 "jun" 6 "jul" 7 "aug" 8 "sep" 9 "oct" 10 "nov" 11 "dec" 12 }}
{{- else if eq $name "day-of-week" }}
{{- $names = dict "sun" 0 "mon" 1 "tue" 2 "wed" 3 "thu" 4 "fri" 5 "sat" 6 }}
{{- end }}
{{- $bad := printf "the %s field %q is not *, a number, a range such as 1-5, a step such as */15, or a list of them" $name $field }}
{{- $problem := "" }}
{{- range $part := splitList "," $field }}
{{- if not $problem }}
{{- if not (regexMatch `^(\*|\?|([0-9]{1,4}|[A-Za-z]{3})(-([0-9]{1,4}|[A-Za-z]{3}))?)(/([0-9]{1,4}))?$` $part) }}
{{- $problem = $bad }}
{{- else }}
{{- $rs := splitn "/" 2 $part }}
{{- if not (has $rs._0 (list "*" "?")) }}
{{- $vals := list }}
{{- range $e := splitList "-" $rs._0 }}
{{- if regexMatch `^[0-9]+$` $e }}{{ $vals = append $vals (atoi $e) }}
{{- else if hasKey $names (lower $e) }}{{ $vals = append $vals (int (get $names (lower $e))) }}
{{- else }}{{ $vals = append $vals "bad" }}
{{- end }}
{{- end }}
{{- if has "bad" $vals }}
{{- $problem = $bad }}
{{- else }}
{{- range $val := $vals }}
{{- if and (not $problem) (or (lt (int $val) $min) (gt (int $val) $max)) }}
{{- $problem = printf "the %s field %q has %d, outside %d-%d" $name $field (int $val) $min $max }}
{{- end }}
{{- end }}
{{- if and (not $problem) (gt (int (first $vals)) (int (last $vals))) }}
{{- $problem = printf "the %s field %q has a range that ends before it starts" $name $field }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not $problem) $rs._1 (eq (atoi $rs._1) 0) }}
{{- $problem = printf "the %s field %q has a step of 0" $name $field }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $problem }}
{{- end }}

{{- /* The shape of a sync window: whole weeks, days, hours, minutes and seconds. */}}
{{- define "cr.sync.windowShape" -}}
^P(?:([0-9]{1,6})W)?(?:([0-9]{1,6})D)?(?:T(?:([0-9]{1,6})H)?(?:([0-9]{1,6})M)?(?:([0-9]{1,6})S)?)?$
{{- end }}

{{- /* cr.sync.windowProblem says why a window is refused, or nothing. Argument: the window, not empty. */}}
{{- define "cr.sync.windowProblem" -}}
{{- $s := toString . }}
{{- if $s }}
{{- if regexMatch `^P[^T]*[YM]` $s }}years and months have no fixed length: give weeks (W) or days (D)
{{- else if or (not (regexMatch (include "cr.sync.windowShape" .) $s)) (eq $s "P") (hasSuffix "T" $s) }}write P, then weeks (W) and days (D), then T and hours (H), minutes (M) and seconds (S), each a whole number
{{- else if eq (include "cr.sync.windowSeconds" $s) "0" }}it is zero
{{- else if gt (atoi (include "cr.sync.windowSeconds" $s)) 31536000 }}it is longer than a year (P365D)
{{- end }}
{{- end }}
{{- end }}

{{- /* cr.sync.windowSeconds is the length of a valid window in seconds. Argument: the window. */}}
{{- define "cr.sync.windowSeconds" -}}
{{- $shape := include "cr.sync.windowShape" . }}
{{- $n := 0 }}
{{- range $i, $unit := list 604800 86400 3600 60 1 }}
{{- $n = add $n (mul (atoi (regexReplaceAll $shape $ (printf "${%d}" (add1 $i)))) $unit) }}
{{- end }}
{{- $n }}
{{- end }}

{{- /* cr.sync.nameProblem says why a repository name is refused, or nothing. Argument: the name. */}}
{{- define "cr.sync.nameProblem" -}}
{{- $n := toString . }}
{{- if eq $n "" }}it is empty
{{- else if or (contains ":" $n) (contains "@" $n) }}it holds a tag or a digest: give the repository's name only, and its tags in tags
{{- else if gt (len $n) 255 }}it is longer than 255 characters
{{- else if not (regexMatch `^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$` $n) }}use lowercase letters and digits, separated by ".", "_", "__" or dashes, and "/" between path components
{{- end }}
{{- end }}

{{- /*
cr.sync.semverValid is "true" when Masterminds/semver v3 (v3.5.0) reads the range: its NewConstraint as a template,
with its own regular expressions (constraints.go): hyphen ranges rewritten, at most 32 "||" groups of at most 512
characters in all, each group a list of comparisons. Argument: the range.
*/}}
{{- define "cr.sync.semverValid" -}}
{{- $cv := `v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?` }}
{{- $ops := `=||!=|>|<|>=|=>|<=|=<|~|~>|\^` }}
{{- $c := toString . }}
{{- if le (len $c) 512 }}
{{- $c = regexReplaceAll (printf `\s*(%s)\s+-\s+(%s)\s*` $cv $cv) $c ">= ${1}, <= ${11} " }}
{{- $groups := splitList "||" $c }}
{{- if le (len $groups) 32 }}
{{- $valid := printf `^(\s*(%s)\s*(%s)\s*)((?:\s+|,\s*)(%s)\s*(%s)\s*)*$` $ops $cv $ops $cv }}
{{- $ok := true }}
{{- range $groups }}{{ if not (regexMatch $valid .) }}{{ $ok = false }}{{ end }}{{ end }}
{{- if $ok }}true{{ end }}
{{- end }}
{{- end }}
{{- end }}
