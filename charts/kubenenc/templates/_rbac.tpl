{{/* The operator's rules: the ClusterRole of operator/rbac/rbac.yaml (tests/helm compares). */}}
{{- define "kubenenc.operatorRules" -}}
- apiGroups: ["kubenenc.io"]
  resources: ["workerpools", "taskdefinitions", "concurrencypolicies"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kubenenc.io"]
  resources: ["workerpools/status", "taskdefinitions/status", "concurrencypolicies/status"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
  {{- with .Values.rbac.backendSecretNames }}
  resourceNames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
