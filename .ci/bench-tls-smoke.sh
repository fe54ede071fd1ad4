#!/usr/bin/env bash
# The bench tool over TLS, seconds long (called by .ci/run): a CA and a server certificate for
# 127.0.0.1 made here with openssl, the `mqtt-broker` program with one TLS listener on a free
# loopback port (stopped by its PID), and `mqtt-bench --cafile` driving our client and
# rumqttc through it at QoS 1. Asserts only that both run and lose nothing (no timing).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(mktemp -d)
broker_pid=
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# The PKI: a CA, and a server certificate from it for localhost and 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=mqtt-streaming bench smoke CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
  >"$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$dir/broker.conf" <<EOF
listener $port 127.0.0.1
certfile $dir/server.pem
keyfile $dir/server.key
allow_anonymous true
EOF

cargo build -q -p mqtt-streaming-tokio --features cli --bin mqtt-broker --bin mqtt-bench
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/mqtt-broker" -c "$dir/broker.conf" >"$dir/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
    break
  fi
  sleep 0.1
done

"$target_dir/debug/mqtt-bench" -h 127.0.0.1 -p "$port" --cafile "$dir/ca.pem" --pubs 2 --subs 2 \
  -q 1 -d 1 --client both --quiet --assert-no-loss --json "$dir/bench-tls.json"
python3 - "$dir/bench-tls.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
assert report["broker"]["transport"] == "tls", report["broker"]
runs = report["runs"]
assert {run["client"] for run in runs} == {"ours", "rumqttc"}, runs
for run in runs:
    assert run["received"] > 0 and run["lost"] == 0, run
print("bench over TLS: " + ", ".join(f'{run["client"]} {run["received"]} received' for run in runs))
EOF
