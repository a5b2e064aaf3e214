#!/usr/bin/env bash
# Checks the monitoring files in deploy/ without running anything of evalctl:
#   - deploy/prometheus/prometheus.yml and the alerts.yml it loads (promtool check config/rules);
#   - the alert rules' unit tests (promtool test rules deploy/prometheus/alerts_test.yml);
#   - deploy/grafana/evalctl.json is a dashboard (JSON with panels and queries);
#   - every evalctl_* and grpc_server_* family that the alerts or the dashboard name is one that
#     controller/service/metrics.cc or agent/runtime/metrics.cc defines.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$src"
promtool=${PROMTOOL:-promtool}

"$promtool" check config deploy/prometheus/prometheus.yml
"$promtool" check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && "$promtool" test rules alerts_test.yml)

queries=$(jq -r '[.panels[].targets[]?.expr] | if length > 0 then .[] else error("no queries") end' \
  deploy/grafana/evalctl.json)
echo "deploy/grafana/evalctl.json: $(wc -l <<<"$queries") queries"

defined=$(sed -n 's/.*\.Name("\([a-z_]*\)").*/\1/p' controller/service/metrics.cc \
  agent/runtime/metrics.cc | sort -u)
used=$({ cat deploy/prometheus/alerts.yml; printf '%s\n' "$queries"; } |
  grep -oE '\b(evalctl|grpc_server)_[a-z_]+' | sed -E 's/_(bucket|sum|count)$//' | sort -u)
unknown=$(comm -13 <(printf '%s\n' "$defined") <(printf '%s\n' "$used"))
if [[ -n "$unknown" ]]; then
  echo "FAIL: alerts.yml or evalctl.json name metrics that evalctl does not define:" >&2
  while read -r name; do echo "  $name" >&2; done <<<"$unknown"
  exit 1
fi
echo "alerts and dashboard use $(wc -l <<<"$used") metric families, all defined"
