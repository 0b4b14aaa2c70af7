{{/* The release's base name: the release name, or <release>-kubenenc. */}}
{{- define "kubenenc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubenenc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's objects: <fullname>-operator. */}}
{{- define "kubenenc.operator" -}}
{{- printf "%s-operator" (include "kubenenc.fullname" .) -}}
{{- end -}}

{{- define "kubenenc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubenenc.operator" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubenenc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kubenenc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kubenenc.operatorSelector" -}}
app.kubernetes.io/name: {{ include "kubenenc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubenenc.redisSelector" -}}
app.kubernetes.io/name: {{ include "kubenenc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "kubenenc.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The restricted-profile container security context shared by every container. */}}
{{- define "kubenenc.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "kubenenc.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubenenc.redisName" -}}
{{- printf "%s-redis" (include "kubenenc.fullname" .) -}}
{{- end -}}

{{- define "kubenenc.dashboard" -}}
{{- printf "%s-dashboard" (include "kubenenc.fullname" .) -}}
{{- end -}}

{{- define "kubenenc.dashboardSelector" -}}
app.kubernetes.io/name: {{ include "kubenenc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: dashboard
{{- end -}}

{{/* The dashboard's image: its own when given, else the operator's (which holds it). */}}
{{- define "kubenenc.dashboardImage" -}}
{{- $img := .Values.dashboard.image -}}
{{- if not $img.repository -}}
{{- include "kubenenc.image" . -}}
{{- else if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}
