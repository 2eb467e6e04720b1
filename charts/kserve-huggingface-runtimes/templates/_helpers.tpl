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

{{/*
The optional API key (security review M5): arguments, read-only mount and Secret volume of the
containers that serve clients (runtime 1, the transformer), when apiKey.secretName is set.
*/}}
{{- define "hfr.apiKeyArgs" -}}
{{- with .Values.apiKey }}
{{- if .secretName }}
- --api_key_file={{ trimSuffix "/" .mountPath }}/{{ .secretKey }}
{{- if .coversMetrics }}
- --api_key_covers_metrics
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "hfr.apiKeyMount" -}}
{{- with .Values.apiKey }}
{{- if .secretName }}
- name: api-key
  mountPath: {{ .mountPath }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "hfr.apiKeyVolume" -}}
{{- with .Values.apiKey }}
{{- if .secretName }}
- name: api-key
  secret:
    secretName: {{ .secretName }}
    items:
      - key: {{ .secretKey }}
        path: {{ .secretKey }}
{{- end }}
{{- end }}
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
{{- if .defaultPromptName }}
- --default_prompt_name={{ .defaultPromptName }}
{{- end }}
{{- if .defaultPrompt }}
- {{ printf "--default_prompt=%s" .defaultPrompt | quote }}
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
With exposedPort grpc, Knative points the serving container's liveness probe at the declared
(gRPC) port (knative/serving deploy.go rewriteUserLivenessProbe), where an HTTP GET fails; an
httpGet liveness probe is therefore rendered as a TCP check of the gRPC port.
Usage: include "hfr.probes" (dict "c" .Values.huggingface "exposed" "http" "grpcPort" 8081)
*/}}
{{- define "hfr.probes" -}}
{{- with .c.readinessProbe }}
readinessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.livenessProbe }}
{{- $live := deepCopy . }}
{{- if and (eq $.exposed "grpc") (hasKey $live "httpGet") }}
{{- $_ := unset $live "httpGet" }}
{{- $_ := set $live "tcpSocket" (dict "port" (int $.grpcPort)) }}
{{- end }}
livenessProbe:
  {{- toYaml $live | nindent 2 }}
{{- end }}
{{- with .c.startupProbe }}
{{- $start := deepCopy . }}
{{- if and $.c.startupSeconds (not (hasKey $start "failureThreshold")) }}
{{- $period := int (default 10 $start.periodSeconds) }}
{{- /* the kubelet allows failureThreshold x periodSeconds: round startupSeconds up to whole periods */ -}}
{{- $_ := set $start "failureThreshold" (div (add (int $.c.startupSeconds) (sub $period 1)) $period) }}
{{- end }}
startupProbe:
  {{- toYaml $start | nindent 2 }}
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
Pod annotations (`spec.annotations`, copied by KServe to the pods). With metrics enabled:
`prometheus.io/*` point a Prometheus that honours them at the runtime's /metrics in either mode;
`prometheus.kserve.io/*` tell queue-proxy where to scrape when KServe's metric aggregation is on
(Serverless). KServe's own `serving.kserve.io/enable-prometheus-scraping` overwrites
`prometheus.io/port` with queue-proxy's port (metrics_aggregate_injector.go).
Usage: include "hfr.podAnnotations" (dict "extra" .Values.huggingface.podAnnotations "metrics" .Values.huggingface.metrics)
*/}}
{{- define "hfr.podAnnotations" -}}
{{- $ann := deepCopy (default dict .extra) -}}
{{- if .metrics.enabled -}}
{{- $_ := set $ann "prometheus.io/scrape" "true" -}}
{{- $_ := set $ann "prometheus.io/port" (toString (int .metrics.port)) -}}
{{- $_ := set $ann "prometheus.io/path" .metrics.path -}}
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

{{/*
Protocols a runtime advertises: the explicit list, else those its declared port serves.
Usage: include "hfr.protocols" (dict "explicit" .Values.huggingface.protocolVersions "exposed" "http")
*/}}
{{- define "hfr.protocols" -}}
{{- if .explicit }}
{{- toYaml .explicit }}
{{- else if eq .exposed "grpc" }}
- grpc-v2
{{- else }}
- v1
- v2
{{- end }}
{{- end -}}

{{/*
supportedModelFormats entry, with the checks KServe's webhook would otherwise make at install:
an auto-selected runtime may not share a priority with KServe's built-in huggingface runtimes
(servingruntime_webhook.go validateServingRuntimePriority).
Usage: include "hfr.modelFormat" (dict "rt" .Values.huggingface "key" "huggingface" "root" $)
*/}}
{{- define "hfr.modelFormat" -}}
{{- $rt := .rt -}}
{{- $taken := list -}}
{{- range (default list .root.Values.kserve.builtinHuggingfacePriorities) -}}
{{- $taken = append $taken (int .) -}}
{{- end -}}
{{- if and $rt.autoSelect (has (int $rt.priority) $taken) -}}
{{- fail (printf "%s.priority %d collides with KServe's built-in huggingface runtimes (priorities %v); KServe's webhook would refuse the runtime. Use another priority, or autoSelect: false" .key (int $rt.priority) .root.Values.kserve.builtinHuggingfacePriorities) -}}
{{- end -}}
- name: {{ .root.Values.modelFormat.name }}
  version: {{ .root.Values.modelFormat.version | quote }}
  autoSelect: {{ $rt.autoSelect }}
  priority: {{ int $rt.priority }}
{{- end -}}

{{/* Fail on a stated KServe version the chart does not support. */}}
{{- define "hfr.checkKServe" -}}
{{- with .Values.kserve.version -}}
{{- if semverCompare "<0.15.0-0" (toString .) -}}
{{- fail (printf "this chart needs KServe >= 0.15 (kserve.version is %s): older KServe does not substitute {{.Name}} in transformer-container" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- $h := .Values.huggingface -}}
{{- $t := .Values.triton -}}
{{- if and $h.enabled $t.enabled $h.autoSelect $t.autoSelect (eq (int $h.priority) (int $t.priority)) -}}
{{- fail "huggingface.priority and triton.priority are equal: KServe's webhook refuses two auto-selected runtimes of one format with the same priority" -}}
{{- end -}}
{{- end -}}

{{/*
Everything of a ClusterServingRuntime before its containers, the same for both runtimes: metadata
(labels, annotations), supported format, protocols, pod annotations/labels, scheduling and pull
secrets. exposed and metrics are those of the container that declares the serving port.
Usage: include "hfr.runtimeHeader" (dict "rt" .Values.huggingface "key" "huggingface"
         "component" "huggingface-runtime" "exposed" .Values.huggingface.exposedPort
         "metrics" .Values.huggingface.metrics "root" $)
*/}}
{{- define "hfr.runtimeHeader" -}}
{{- $rt := .rt -}}
{{- $root := .root -}}
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterServingRuntime
metadata:
  name: {{ $rt.name }}
  labels:
    {{- include "hfr.labels" $root | trim | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $rt.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with (include "hfr.objectAnnotations" (dict "extra" $rt.annotations "root" $root)) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  {{- if $rt.disabled }}
  disabled: true
  {{- end }}
  supportedModelFormats:
    {{- include "hfr.modelFormat" (dict "rt" $rt "key" .key "root" $root) | nindent 4 }}
  protocolVersions:
    {{- include "hfr.protocols" (dict "explicit" $rt.protocolVersions "exposed" .exposed) | nindent 4 }}
  {{- with (include "hfr.podAnnotations" (dict "extra" $rt.podAnnotations "metrics" .metrics)) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with $rt.podLabels }}
  labels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $rt.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $rt.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $rt.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (include "hfr.imagePullSecrets" $root | trim) }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end -}}
