{{/*
Helpers of the kserve-huggingface-runtimes chart.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "hfr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "hfr.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "hfr.labels" -}}
app.kubernetes.io/name: {{ include "hfr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "hfr.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
KServe substitutes `{{.Name}}` (the InferenceService name) in a runtime's args.
Helm would evaluate it, so the placeholder is emitted from a string literal.
*/}}
{{- define "hfr.modelNamePlaceholder" -}}
{{- print "{{.Name}}" -}}
{{- end -}}

{{/*
Image reference: registry/repository:tag, or @digest when a digest is set.
Usage: include "hfr.image" (dict "image" .Values.huggingface.image "root" $)
*/}}
{{- define "hfr.image" -}}
{{- $img := .image -}}
{{- $repo := $img.repository -}}
{{- if $img.registry -}}
{{- $repo = printf "%s/%s" $img.registry $img.repository -}}
{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
Container securityContext: the shared default merged with a per-container override.
Usage: include "hfr.securityContext" (dict "override" .Values.huggingface.securityContext "root" $)
*/}}
{{- define "hfr.securityContext" -}}
{{- $merged := mustMergeOverwrite (deepCopy .root.Values.containerSecurityContext) (deepCopy (default dict .override)) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/*
Resources (every quantity rendered as a string) with the requested GPU count added to
limits and requests when gpu > 0.
Usage: include "hfr.resources" (dict "resources" .Values.huggingface.resources "gpu" .Values.huggingface.gpu)
*/}}
{{- define "hfr.resources" -}}
{{- $res := dict -}}
{{- range $kind, $quantities := (default dict .resources) -}}
{{- $out := dict -}}
{{- range $k, $v := $quantities -}}
{{- $_ := set $out $k (toString $v) -}}
{{- end -}}
{{- $_ := set $res $kind $out -}}
{{- end -}}
{{- if gt (int .gpu) 0 -}}
{{- $limits := default dict (get $res "limits") -}}
{{- $_ := set $limits "nvidia.com/gpu" (toString (int .gpu)) -}}
{{- $_ := set $res "limits" $limits -}}
{{- $requests := default dict (get $res "requests") -}}
{{- $_ := set $requests "nvidia.com/gpu" (toString (int .gpu)) -}}
{{- $_ := set $res "requests" $requests -}}
{{- end -}}
{{- toYaml $res -}}
{{- end -}}

{{/* Environment shared by every container: offline hub and writable cache dirs. */}}
{{- define "hfr.commonEnv" -}}
{{- if .Values.offline }}
- name: HF_HUB_OFFLINE
  value: "1"
- name: TRANSFORMERS_OFFLINE
  value: "1"
{{- end }}
{{- if not (kindIs "invalid" .Values.drainDelaySeconds) }}
- name: HFSERVE_DRAIN_DELAY_S
  value: {{ .Values.drainDelaySeconds | quote }}
{{- end }}
- name: HOME
  value: {{ .Values.scratch.cacheDir | quote }}
- name: HF_HOME
  value: {{ printf "%s/huggingface" .Values.scratch.cacheDir | quote }}
- name: XDG_CACHE_HOME
  value: {{ .Values.scratch.cacheDir | quote }}
- name: TMPDIR
  value: /tmp
{{- end -}}

{{/* Volume mounts shared by every container. */}}
{{- define "hfr.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: cache
  mountPath: {{ .Values.scratch.cacheDir }}
{{- end -}}

{{/* Volumes shared by every runtime pod. */}}
{{- define "hfr.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.scratch.tmpSizeLimit }}
- name: cache
  emptyDir:
    sizeLimit: {{ .Values.scratch.cacheSizeLimit }}
{{- end -}}

{{/*
Tokenizer/limit arguments shared by runtime 1 and the transformer.
Usage: include "hfr.tokenizerArgs" .Values.huggingface.args
*/}}
{{- define "hfr.tokenizerArgs" -}}
{{- if .task }}
- --task={{ .task }}
{{- end }}
{{- if gt (int .maxLength) 0 }}
- --max_length={{ int .maxLength }}
{{- end }}
{{- if .disableLowerCase }}
- --disable_lower_case
{{- end }}
{{- if .disableSpecialTokens }}
- --disable_special_tokens
{{- end }}
{{- if .returnProbabilities }}
- --return_probabilities
{{- end }}
- --max_request_items={{ int .maxRequestItems }}
- --max_request_bytes={{ int64 .maxRequestBytes }}
{{- end -}}

{{/*
The single declared container port (Knative accepts one port per pod).
Usage: include "hfr.servingPort" (dict "exposed" "http" "http" 8080 "grpc" 8081)
*/}}
{{- define "hfr.servingPort" -}}
{{- if eq .exposed "grpc" }}
- name: h2c
  containerPort: {{ int .grpc }}
  protocol: TCP
{{- else }}
- name: http1
  containerPort: {{ int .http }}
  protocol: TCP
{{- end }}
{{- end -}}

{{/*
Probes of a container; an empty dict leaves the probe out.
Usage: include "hfr.probes" .Values.huggingface
*/}}
{{- define "hfr.probes" -}}
{{- with .readinessProbe }}
readinessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .livenessProbe }}
livenessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .startupProbe }}
startupProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Object annotations: commonAnnotations plus the runtime's own.
Usage: include "hfr.objectAnnotations" (dict "extra" .Values.huggingface.annotations "root" $)
*/}}
{{- define "hfr.objectAnnotations" -}}
{{- $ann := deepCopy (default dict .root.Values.commonAnnotations) -}}
{{- $ann = mustMergeOverwrite $ann (deepCopy (default dict .extra)) -}}
{{- if $ann }}
{{- toYaml $ann }}
{{- end }}
{{- end -}}

{{/*
Pod annotations (`spec.annotations`, copied by KServe to the pods), with the
Prometheus scrape port and path KServe reads when scraping is enabled.
Usage: include "hfr.podAnnotations" (dict "extra" .Values.huggingface.podAnnotations "metrics" .Values.huggingface.metrics)
*/}}
{{- define "hfr.podAnnotations" -}}
{{- $ann := deepCopy (default dict .extra) -}}
{{- if .metrics.enabled -}}
{{- $_ := set $ann "prometheus.kserve.io/port" (toString (int .metrics.port)) -}}
{{- $_ := set $ann "prometheus.kserve.io/path" .metrics.path -}}
{{- end -}}
{{- if $ann }}
{{- toYaml $ann }}
{{- end }}
{{- end -}}

{{/* imagePullSecrets block, when any. */}}
{{- define "hfr.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
