{{/* Full name of the release's objects: the release name if it already contains the chart name. */}}
{{- define "fjord-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fjord-operator.serviceAccountName" -}}
{{- default (include "fjord-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Selector labels: stable for the life of the release (a Deployment selector is immutable). */}}
{{- define "fjord-operator.selectorLabels" -}}
app.kubernetes.io/name: fjord-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fjord-operator.labels" -}}
{{ include "fjord-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
