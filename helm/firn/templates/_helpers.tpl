{{/* The release's base name, at most 63 characters. */}}
{{- define "firn.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The headless Service that gives each pod its stable DNS name. */}}
{{- define "firn.headless" -}}
{{- printf "%s-headless" (include "firn.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "firn.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "firn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "firn.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "firn.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "firn.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* A pod's address as its peers reach it: POD.HEADLESS.NAMESPACE.svc.DOMAIN:PORT. */}}
{{- define "firn.podAddress" -}}
{{- printf "%s.%s.%s.svc.%s:%d" .pod (include "firn.headless" .root) .root.Release.Namespace .root.Values.cluster.clusterDomain (int .root.Values.port) -}}
{{- end -}}

{{/* The founding pods' addresses, comma-separated (the --peers of a new cluster). */}}
{{- define "firn.peers" -}}
{{- $root := . -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.cluster.initialNodes) -}}
{{- $peers = append $peers (include "firn.podAddress" (dict "pod" (printf "%s-%d" (include "firn.fullname" $root) $i) "root" $root)) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{- define "firn.objectStorageSecret" -}}
{{- if .Values.objectStorage.existingSecret -}}
{{- .Values.objectStorage.existingSecret -}}
{{- else -}}
{{- printf "%s-object-storage" (include "firn.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Whether object-storage credentials come from a Secret (given or created). */}}
{{- define "firn.objectStorageCredentials" -}}
{{- if or .Values.objectStorage.existingSecret .Values.objectStorage.accessKeyId -}}true{{- end -}}
{{- end -}}

{{- define "firn.adminSecret" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-admin" (include "firn.fullname" .) -}}
{{- end -}}
{{- end -}}
