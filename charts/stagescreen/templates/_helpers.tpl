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

{{/* The namespaces the operator watches, as JSON: none (every namespace) when clusterWide,
else watchNamespaces, else only the release namespace. */}}
{{- define "stagescreen.watchNamespaces" -}}
{{- if .Values.clusterWide -}}
{{- toJson list -}}
{{- else -}}
{{- toJson (.Values.watchNamespaces | default (list .Release.Namespace)) -}}
{{- end -}}
{{- end -}}

{{/* Where studies run and so where analysis Jobs need their ServiceAccount and Role: the
watched namespaces; cluster-wide, studyNamespaces or else the release namespace. */}}
{{- define "stagescreen.studyNamespaces" -}}
{{- if .Values.clusterWide -}}
{{- toJson (.Values.studyNamespaces | default (list .Release.Namespace)) -}}
{{- else -}}
{{- include "stagescreen.watchNamespaces" . -}}
{{- end -}}
{{- end -}}

{{/* Values that contradict each other fail the render, naming both. */}}
{{- define "stagescreen.checkValues" -}}
{{- if and .Values.clusterWide .Values.watchNamespaces -}}
{{- fail "clusterWide: true watches every namespace: leave watchNamespaces empty, or set clusterWide: false to watch only those listed" -}}
{{- end -}}
{{- if and (not .Values.clusterWide) .Values.studyNamespaces -}}
{{- fail "studyNamespaces is for clusterWide: true; a namespaced operator runs studies only in watchNamespaces (default: the release namespace), and the chart gives each the analysis ServiceAccount" -}}
{{- end -}}
{{- if and .Values.webhook.certManager.enabled (or .Values.webhook.existingTLSSecret .Values.webhook.caBundle) -}}
{{- fail "webhook.certManager.enabled: cert-manager writes the webhook's Secret and injects its CA; leave webhook.existingTLSSecret and webhook.caBundle empty" -}}
{{- end -}}
{{- if and .Values.webhook.caBundle (not .Values.webhook.existingTLSSecret) -}}
{{- fail "webhook.caBundle is the CA of webhook.existingTLSSecret: set both, or neither for a certificate the chart generates" -}}
{{- end -}}
{{- end -}}

{{/* The webhook's certificate as one dict, computed once per render and kept in .Values so
that the TLS Secret, the caBundle and the pod's checksum annotation all come from the same
certificate (each template calling genCA would get a different CA):
  caBundle  the CA the API server trusts (base64 PEM);
  secret    the data of the Secret the chart renders (empty for an existing Secret);
  checksum  of the certificate the pod mounts: a new one restarts the pod.
An existing Secret (webhook.existingTLSSecret) is read with `lookup`; where the render cannot
read it (`helm template`, Argo CD, --dry-run) and no webhook.caBundle is given, the render
fails: an empty caBundle would make every study write fail. Otherwise the Secret of an
earlier install is kept (an upgrade keeps its certificate); else a new self-signed CA and a
certificate signed by it (a first install, and every `helm template`: the pod then restarts
with the new certificate, which the new caBundle names). cert-manager mode: nothing here,
cert-manager writes the Secret and injects the CA. */}}
{{- define "stagescreen.webhookTLS" -}}
{{- if not (hasKey .Values "__webhookTLS") -}}
{{- $name := include "stagescreen.fullname" . -}}
{{- $service := printf "%s-webhook" $name -}}
{{- $tls := dict -}}
{{- if .Values.webhook.existingTLSSecret -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.webhook.existingTLSSecret -}}
{{- $data := $secret.data | default dict -}}
{{- $ca := .Values.webhook.caBundle | default (index $data "ca.crt") | default "" -}}
{{- if not $ca -}}
{{- fail (printf "webhook.existingTLSSecret: the CA of Secret %q in namespace %q cannot be known at render time (the render cannot read the cluster, as under `helm template`, Argo CD or --dry-run, or the Secret has no ca.crt), and an empty caBundle would make the API server refuse every study write. Ways out: set webhook.caBundle to the base64 PEM of the CA that signed it; or set webhook.certManager.enabled=true; or leave webhook.existingTLSSecret empty for a certificate the chart generates; or run `helm install/upgrade` against the cluster where the Secret exists" .Values.webhook.existingTLSSecret .Release.Namespace) -}}
{{- end -}}
{{- $tls = dict "caBundle" $ca "secret" dict "checksum" (toJson (list $data $ca) | sha256sum | trunc 16) -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (printf "%s-webhook-tls" $name) -}}
{{- $data := dict -}}
{{- if and $existing (index ($existing.data | default dict) "ca.crt") -}}
{{- $data = $existing.data -}}
{{- else -}}
{{- $ca := genCA (printf "%s-ca" $name) 3650 -}}
{{- $dns := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) -}}
{{- $cert := genSignedCert $service nil $dns 3650 $ca -}}
{{- $data = dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) -}}
{{- end -}}
{{- $tls = dict "caBundle" (index $data "ca.crt") "secret" $data "checksum" (toJson $data | sha256sum | trunc 16) -}}
{{- end -}}
{{- $_ := set .Values "__webhookTLS" $tls -}}
{{- end -}}
{{- toJson (get .Values "__webhookTLS") -}}
{{- end -}}
