{{/* Names, labels and the pieces every Godel pod shares. */}}

{{- define "godel.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "godel.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "agent") */}}
{{- define "godel.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "godel.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "godel.gatewayImage" -}}
{{- printf "%s:%s" .Values.gatewayImage.repository (default .Chart.AppVersion .Values.gatewayImage.tag) -}}
{{- end -}}

{{- define "godel.keysSecret" -}}
{{- default (printf "%s-keys" (include "godel.fullname" .)) .Values.keys.existingSecret -}}
{{- end -}}

{{/* Where one role is reached inside the cluster: <fullname>-<role>:<grpc port>. */}}
{{- define "godel.address" -}}
{{- printf "%s-%s:%v" (include "godel.fullname" .root) .role (index .root.Values.ports .role "grpc") -}}
{{- end -}}

{{/* host:port of every agent-service replica (StatefulSet pods behind the headless Service). */}}
{{- define "godel.agentReplicas" -}}
{{- $name := include "godel.fullname" . -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.services.agent.replicas) -}}
{{- $addrs = append $addrs (printf "%s-agent-%d.%s-agent-pods:%v" $name $i $name $.Values.ports.agent.grpc) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end -}}

{{/* The GODEL_* settings every Godel process shares (the ConfigMap, and the migration Job's env). */}}
{{- define "godel.config" -}}
{{- $root := . -}}
GODEL_HOME: /var/lib/godel
GODEL_BIND_HOST: "0.0.0.0"
GODEL_LOG_LEVEL: {{ .Values.logLevel | quote }}
GODEL_MIGRATE_ON_START: "false"
GODEL_DATABASE_URL: {{ .Values.postgresql.url | quote }}
GODEL_DATABASE_NAME_PREFIX: {{ .Values.postgresql.databasePrefix | quote }}
GODEL_DATABASE_PASSWORD_FILE: /var/run/secrets/godel/postgresql/password
GODEL_KAFKA_BOOTSTRAP: {{ .Values.kafka.bootstrap | quote }}
GODEL_KAFKA_PARTITIONS: {{ .Values.kafka.partitions | quote }}
GODEL_KAFKA_REPLICATION_FACTOR: {{ .Values.kafka.replicationFactor | quote }}
GODEL_KAFKA_MIN_INSYNC_REPLICAS: {{ .Values.kafka.minInsyncReplicas | quote }}
GODEL_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
{{- if .Values.kafka.tls.secret }}
GODEL_KAFKA_SSL_CA_FILE: /var/run/secrets/godel/kafka-tls/ca.crt
{{- if .Values.kafka.tls.clientCertificate }}
GODEL_KAFKA_SSL_CERT_FILE: /var/run/secrets/godel/kafka-tls/tls.crt
GODEL_KAFKA_SSL_KEY_FILE: /var/run/secrets/godel/kafka-tls/tls.key
{{- end }}
{{- end }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
GODEL_KAFKA_SASL_MECHANISM: {{ .Values.kafka.sasl.mechanism | quote }}
GODEL_KAFKA_SASL_USERNAME: {{ .Values.kafka.sasl.username | quote }}
GODEL_KAFKA_SASL_PASSWORD_FILE: /var/run/secrets/godel/kafka-sasl/password
{{- end }}
{{- if .Values.tls.mesh.enabled }}
GODEL_TLS_CA_FILE: /var/run/secrets/godel/tls/ca.crt
GODEL_TLS_CERT_FILE: /var/run/secrets/godel/tls/tls.crt
GODEL_TLS_KEY_FILE: /var/run/secrets/godel/tls/tls.key
{{- end }}
{{- range $role := list "agent" "team" "event" "cluster" }}
GODEL_{{ upper $role }}_PORT: {{ index $root.Values.ports $role "grpc" | quote }}
GODEL_{{ upper $role }}_ADMIN_PORT: {{ index $root.Values.ports $role "admin" | quote }}
GODEL_{{ upper $role }}_ADDR: {{ include "godel.address" (dict "root" $root "role" $role) | quote }}
{{- end }}
GODEL_EVENT_WS_PORT: {{ .Values.ports.event.websocket | quote }}
{{- with .Values.worker.defaultRepo }}
GODEL_DEFAULT_REPO: {{ . | quote }}
{{- end }}
{{- range $name, $value := .Values.extraEnv }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Writable directories and the mesh's TLS files: every Godel pod. */}}
{{- define "godel.baseVolumes" -}}
- name: home
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if .Values.tls.mesh.enabled }}
- name: tls
  secret: { secretName: {{ required "tls.mesh.secretName is required" .Values.tls.mesh.secretName }} }
{{- end }}
{{- end -}}

{{- define "godel.baseVolumeMounts" -}}
- { name: home, mountPath: /var/lib/godel }
- { name: tmp, mountPath: /tmp }
{{- if .Values.tls.mesh.enabled }}
- { name: tls, mountPath: /var/run/secrets/godel/tls, readOnly: true }
{{- end }}
{{- end -}}

{{/* The database and Kafka credentials: the services and the migration Job only (never the
workers, which run the agents' code, nor the gateway). */}}
{{- define "godel.volumes" -}}
{{ include "godel.baseVolumes" . }}
- name: postgresql
  secret:
    secretName: {{ .Values.postgresql.passwordSecret }}
    items: [{ key: {{ .Values.postgresql.passwordKey }}, path: password }]
{{- if .Values.kafka.tls.secret }}
- name: kafka-tls
  secret: { secretName: {{ .Values.kafka.tls.secret }} }
{{- end }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
- name: kafka-sasl
  secret:
    secretName: {{ required "kafka.sasl.passwordSecret is required with SASL" .Values.kafka.sasl.passwordSecret }}
    items: [{ key: {{ .Values.kafka.sasl.passwordKey }}, path: password }]
{{- end }}
{{- end -}}

{{- define "godel.volumeMounts" -}}
{{ include "godel.baseVolumeMounts" . }}
- { name: postgresql, mountPath: /var/run/secrets/godel/postgresql, readOnly: true }
{{- if .Values.kafka.tls.secret }}
- { name: kafka-tls, mountPath: /var/run/secrets/godel/kafka-tls, readOnly: true }
{{- end }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
- { name: kafka-sasl, mountPath: /var/run/secrets/godel/kafka-sasl, readOnly: true }
{{- end }}
{{- end -}}

{{- define "godel.podDefaults" -}}
serviceAccountName: {{ include "godel.fullname" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
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

{{/* Probes on the admin port: /healthz (runs) and /readyz (serves). */}}
{{- define "godel.probes" -}}
startupProbe:
  httpGet: { path: /healthz, port: admin }
  periodSeconds: 2
  failureThreshold: 90
livenessProbe:
  httpGet: { path: /healthz, port: admin }
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: { path: /readyz, port: admin }
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}
