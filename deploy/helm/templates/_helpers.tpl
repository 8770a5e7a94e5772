{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "cloister.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Base name of every object: the release name (as in the seed: api-v1-...). */}}
{{- define "cloister.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cloister.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "api"). */}}
{{- define "cloister.labels" -}}
helm.sh/chart: {{ include "cloister.chart" .ctx }}
{{ include "cloister.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: cloister
{{- end -}}

{{- define "cloister.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloister.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The CAS address workloads use. */}}
{{- define "cloister.casAddr" -}}
{{- default (printf "%s-cas:8081" (include "cloister.fullname" .)) .Values.scone.cas -}}
{{- end -}}

{{/* Environment of every `cloister run` container. */}}
{{- define "cloister.runtimeEnv" -}}
- name: CLOISTER_CAS_ADDR
  value: {{ include "cloister.casAddr" . | quote }}
- name: CLOISTER_LAS_ADDR
  value: {{ printf "%s/las.sock" (.Values.scone.lasSocketDir | trimSuffix "/") | quote }}
- name: CLOISTER_CAS_CERT
  value: /var/lib/cloister/public/cas-ca.pem
- name: CLOISTER_RETRY_SECONDS
  value: {{ .Values.scone.retrySeconds | quote }}
{{- end -}}

{{/* The pinned CAS certificate volume (a ConfigMap: a CA certificate is public). */}}
{{- define "cloister.casCertVolume" -}}
- name: cas-cert
  configMap:
    name: {{ include "cloister.fullname" . }}-cas-cert
{{- end -}}

{{/* The node's LAS socket directory (hostPath, shared with the LAS DaemonSet, as SPIRE's
agent shares its socket). The LAS identifies a caller by the kernel's peer credentials on
the socket, never by what the caller says. */}}
{{- define "cloister.lasSocketVolume" -}}
- name: las-socket
  hostPath:
    path: {{ .Values.scone.lasSocketDir | quote }}
    type: DirectoryOrCreate
{{- end -}}

{{/* Workloads only connect to the socket: a read-only mount is enough. */}}
{{- define "cloister.lasSocketMount" -}}
- name: las-socket
  mountPath: {{ .Values.scone.lasSocketDir | quote }}
  readOnly: true
{{- end -}}

{{- define "cloister.casCertMount" -}}
- name: cas-cert
  mountPath: /var/lib/cloister/public
  readOnly: true
{{- end -}}

{{- define "cloister.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
