# What the benchmark scripts share (sourced): venvs under target/, free
# ports, readiness, and stopping the server under test ($server).

# venv NAME REQUIREMENTS: a virtual environment under target/, made once.
venv() {
  local dir="target/$1"
  if [ ! -x "$dir/bin/python" ] || [ ! -e "$dir/.installed" ]; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q -r "$2"
    touch "$dir/.installed"
  fi
  echo "$dir"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready BASE_URL: until its readiness answers 200 (30 s at most).
wait_ready() {
  for _ in $(seq 300); do curl -sf "$1/v2/health/ready" >/dev/null && return 0; sleep 0.1; done
  echo "server at $1 never became ready; the logs:" >&2
  tail -n 20 "$work"/*.log >&2 2>/dev/null || true
  exit 1
}

stop_server() {
  if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=""
}
