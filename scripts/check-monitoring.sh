#!/usr/bin/env bash
# Checks deploy/monitoring/ with Prometheus's own tool: the rules parse
# (`promtool check rules`) and each alert fires on the failure it is for and
# stays quiet on traffic that must not page (`promtool test rules`, cases in
# sluice-rules.test.yml). Installs promtool from Debian's `prometheus`
# package when it is missing. That the rules and the dashboard use only
# metrics Sluice exports is tests/tests/e2e/monitoring.rs (cargo test).
set -euo pipefail
cd "$(dirname "$0")/../deploy/monitoring"
if ! command -v promtool >/dev/null; then
  sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y --no-install-recommends prometheus >/dev/null ||
    { "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" apt-get install -y --no-install-recommends prometheus >/dev/null; }
fi
promtool check rules sluice-rules.yml
promtool test rules sluice-rules.test.yml
python3 -c 'import json; print("sluice-dashboard.json:", len(json.load(open("sluice-dashboard.json"))["panels"]), "panels")'
