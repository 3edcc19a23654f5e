{{- define "ergon.name" -}}ergon{{- end -}}
{{- define "ergon.fullname" -}}{{ .Release.Name }}{{- end -}}
{{- define "ergon.labels" -}}
app.kubernetes.io/name: ergon
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "ergon.selector" -}}
app.kubernetes.io/name: ergon
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
