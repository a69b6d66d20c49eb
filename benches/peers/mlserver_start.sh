#!/usr/bin/env bash
# Seldon MLServer serving every model of a Triton-style repository
# (REPOSITORY_DIR/{model}/{version}/model.onnx, newest version) with the ONNX
# Runtime runtime of mlserver_runtime.py, HTTP (Open Inference Protocol V2) on
# 127.0.0.1:PORT.
#
#   [MLSERVER_VENV=DIR] [GRPC_PORT=G] taskset -c 0 benches/peers/mlserver_start.sh REPOSITORY_DIR PORT
#
# Writes settings.json and one model-settings.json per model into a fresh temp
# dir (MLSERVER_SETTINGS_DIR if set; left behind, a few hundred bytes) and then
# execs `mlserver start` there, so the caller's pid is MLServer's and the
# taskset affinity is inherited. Settings: parallel_workers 0 (inference inline
# in the one server process: no worker pool, no IPC), metrics server and
# Prometheus middleware off (metrics_endpoint null), gzip off, debug off (no
# access log). MLServer always starts its gRPC server: it listens on 127.0.0.1
# on GRPC_PORT, or on a free port picked here. MLSERVER_VENV defaults to
# target/peers-mlserver-venv (pip install -r benches/peers/requirements-mlserver.txt).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 REPOSITORY_DIR PORT" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
repository="$(cd "$1" && pwd)"
port="$2"
venv="${MLSERVER_VENV:-$here/../../target/peers-mlserver-venv}"
settings="${MLSERVER_SETTINGS_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mlserver-settings.XXXXXX")}"
mkdir -p "$settings"

"$venv/bin/python" - "$repository" "$settings" "$port" "${GRPC_PORT:-}" <<'EOF'
import json, pathlib, socket, sys

repository, settings, port, grpc_port = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if not grpc_port:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        grpc_port = s.getsockname()[1]
(settings / "settings.json").write_text(json.dumps({
    "debug": False,
    "host": "127.0.0.1",
    "http_port": port,
    "grpc_port": int(grpc_port),
    "parallel_workers": 0,
    "metrics_endpoint": None,
    "gzip_enabled": False,
    "load_models_at_startup": True,
}, indent=2))
for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
    versions = sorted((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    if not versions or not (versions[-1] / "model.onnx").is_file():
        continue
    (settings / model_dir.name).mkdir(exist_ok=True)
    (settings / model_dir.name / "model-settings.json").write_text(json.dumps({
        "name": model_dir.name,
        "implementation": "mlserver_runtime.OnnxRuntime",
        "parameters": {"uri": str(versions[-1] / "model.onnx"), "version": versions[-1].name},
    }, indent=2))
EOF

cd "$settings"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/mlserver" start "$settings"
