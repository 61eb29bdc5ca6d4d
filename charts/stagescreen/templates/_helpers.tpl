{{- define "stagescreen.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "stagescreen.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "stagescreen.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "stagescreen.serviceAccount" -}}
{{- default (include "stagescreen.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "stagescreen.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where studies run: studyNamespaces, else the watched ones, else the release's. */}}
{{- define "stagescreen.studyNamespaces" -}}
{{- $list := .Values.studyNamespaces | default .Values.watchNamespaces | default (list .Release.Namespace) -}}
{{- toJson $list -}}
{{- end -}}

{{/* The webhook's TLS data (base64): the existing Secret's on upgrade, else a new CA and a
certificate for the webhook Service signed by it. */}}
{{- define "stagescreen.webhookTLS" -}}
{{- $name := include "stagescreen.fullname" . -}}
{{- $service := printf "%s-webhook" $name -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (printf "%s-webhook-tls" $name) -}}
{{- if and $existing (index ($existing.data | default dict) "ca.crt") -}}
{{- toYaml $existing.data -}}
{{- else -}}
{{- $ca := genCA (printf "%s-ca" $name) 3650 -}}
{{- $dns := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) -}}
{{- $cert := genSignedCert $service nil $dns 3650 $ca -}}
ca.crt: {{ $ca.Cert | b64enc }}
tls.crt: {{ $cert.Cert | b64enc }}
tls.key: {{ $cert.Key | b64enc }}
{{- end -}}
{{- end -}}
