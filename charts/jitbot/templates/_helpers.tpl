{{- define "jitbot.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- define "jitbot.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "jitbot.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "jitbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "jitbot.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}
{{- define "jitbot.redisConfigured" -}}
{{- if or .Values.redis.url .Values.redis.existingSecretKey -}}true{{- end -}}
{{- end -}}
{{/* Refuse values that would install a jitbot that cannot work, with the fix in the message. */}}
{{- define "jitbot.validate" -}}
{{- if not .Values.policy -}}
{{- fail "values.policy is required: paste your policy file (docs/policy.md) under `policy: |`, after checking it with `jitbot policy check policy.yaml`; charts/jitbot/values-example.yaml shows a complete example" -}}
{{- end -}}
{{- if not .Values.existingSecret -}}
{{- fail "values.existingSecret is required: the name of a Secret holding SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN) and every *_env secret of the policy (docs/deploy.md)" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "jitbot.redisConfigured" .)) -}}
{{- fail (printf "replicaCount is %d but no Redis is configured: every replica would run its own embedded store and its own sweeper (split brain). Set redis.url or redis.existingSecretKey, or replicaCount: 1" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.redis.url .Values.redis.existingSecretKey -}}
{{- fail "set either redis.url or redis.existingSecretKey, not both" -}}
{{- end -}}
{{- end -}}
