#!/usr/bin/env bash
# The client matrix of issue 12: our client's CPU per message against rumqttc's, publishing
# flat out to mosquitto, with `mqtt-bench`'s library-less generator beside them as the floor.
# Prints a markdown table (machine, load average, medians and spread over rounds) on stdout;
# everything else goes to stderr and to $OUT (the JSON of every run, mosquitto's log and
# configuration).
#
#   .ci/bench-clients.sh                          # 5 rounds, 3 s each, every QoS and size
#   QOS="2" SIZES="65536" ROUNDS=9 .ci/bench-clients.sh
#   .ci/bench-clients.sh --tables-only            # the table again, from $OUT/json
#
# Each row (a QoS and a payload size) gets a freshly started mosquitto (it slows down over a
# long session), then ROUNDS rounds; each round runs every client of CLIENTS once, their
# order rotated from round to round, each a separate `mqtt-bench --pubs 1 --subs 0` process
# (its CPU is the process's utime + stime over the run, divided by the messages sent).
#
# The clients (`mqtt-bench --client`):
#   ours     our client (tokio), window WINDOW;
#   rumqttc  rumqttc 0.25, the same window, the same payloads (`publish_bytes`);
#   raw      no client library: pre-encoded packets over plain TCP, each acknowledgement read
#            as it comes. Not a bound on what a client can do at small sizes (it pays a read
#            per acknowledgement); at large sizes, where the kernel's copy and TCP work are
#            most of the cost, it shows what writing the bytes costs without any library.
# Every payload is made fresh for each message by the bench (zeroed, then stamped) for ours
# and rumqttc alike; raw copies a pre-encoded packet per message.
#
# The table: µs of CPU per message, median [min-max] over the rounds for each client, the
# ratio of the medians ours / rumqttc, and the median of the rounds' own ratios (each
# round's ours / rumqttc, which cancels slow phases of the machine that span a round).
#
# Environment: QOS ("0 1 2"), SIZES ("64 4096 65536"), ROUNDS (5), DURATION (3 s per run),
# WINDOW (64), CLIENTS ("raw ours rumqttc"), PORT (21990), OUT (target/bench-clients).
# mosquitto (installed with apt-get if missing) listens on 127.0.0.1:PORT only, configured
# with $OUT/mosquitto.conf:
#   allow_anonymous true
#   max_inflight_messages 0       (no limit: the client's window is the limit)
#   max_queued_messages 100000
#   set_tcp_nodelay true
# and is stopped by its PID. The machine is not isolated: the load average is reported with
# the figures and must be read with them.
set -euo pipefail
cd "$(dirname "$0")/.."

QOS=${QOS:-"0 1 2"}
SIZES=${SIZES:-"64 4096 65536"}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
WINDOW=${WINDOW:-64}
CLIENTS=${CLIENTS:-"raw ours rumqttc"}
PORT=${PORT:-21990}
OUT=${OUT:-target/bench-clients}
mkdir -p "$OUT/json"
OUT=$(cd "$OUT" && pwd)
TABLES_ONLY=0
[ "${1:-}" = "--tables-only" ] && TABLES_ONLY=1

log() { echo "== $*" >&2; }

tables() {
    python3 - "$OUT/json" <<'EOF'
import json, os, statistics, sys

rows = {}
loads = []
machine = None
for name in sorted(os.listdir(sys.argv[1])):
    if not name.endswith(".json"):
        continue
    with open(os.path.join(sys.argv[1], name)) as f:
        doc = json.load(f)
    machine = doc.get("machine", machine)
    qos, size, rnd, client = name[:-5].split("-")
    for run in doc["runs"]:
        if run["first_error"] or run["sent"] == 0:
            continue
        rows.setdefault((int(qos), int(size)), {}).setdefault(int(rnd), {})[client] = run["cpu_us_per_msg"]
        loads.append(float(run["loadavg"].split()[0]))

def spread(values):
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"

def size_name(size):
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"

clients = [c for c in ("raw", "ours", "rumqttc") if any(c in r for row in rows.values() for r in row.values())]
print(f"Client matrix: {machine}; 1-minute load average during the runs "
      f"{min(loads, default=0):.1f} to {max(loads, default=0):.1f}. "
      "µs of CPU per message, median [min-max] over the rounds.\n")
header = "| case | " + " | ".join(clients) + " | ours / rumqttc (medians) | ours / rumqttc (per round, median [min-max]) |"
print(header)
print("|" + "---|" * (header.count("|") - 1))
for (qos, size) in sorted(rows):
    rounds = rows[(qos, size)]
    cells = [spread([r[c] for r in rounds.values() if c in r]) for c in clients]
    ours = [r["ours"] for r in rounds.values() if "ours" in r]
    theirs = [r["rumqttc"] for r in rounds.values() if "rumqttc" in r]
    paired = [r["ours"] / r["rumqttc"] for r in rounds.values() if "ours" in r and "rumqttc" in r]
    ratio = f"{statistics.median(ours) / statistics.median(theirs):.2f}x" if ours and theirs else "-"
    per_round = (f"{statistics.median(paired):.2f}x [{min(paired):.2f}-{max(paired):.2f}]"
                 if paired else "-")
    print(f"| QoS {qos}, {size_name(size)} | " + " | ".join(cells) + f" | {ratio} | {per_round} |")
EOF
}

if [ "$TABLES_ONLY" = 1 ]; then
    tables
    exit 0
fi

if ! command -v mosquitto >/dev/null; then
    log "installing mosquitto"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -q mosquitto >&2
fi
log "building mqtt-bench"
cargo build --release -q -p mqtt-streaming-tokio --features cli --bin mqtt-bench >&2
BENCH=target/release/mqtt-bench

cat >"$OUT/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
max_inflight_messages 0
max_queued_messages 100000
set_tcp_nodelay true
EOF

MOSQUITTO_PID=""
stop_mosquitto() {
    if [ -n "$MOSQUITTO_PID" ]; then
        kill "$MOSQUITTO_PID" 2>/dev/null || true
        wait "$MOSQUITTO_PID" 2>/dev/null || true
        MOSQUITTO_PID=""
    fi
}
trap stop_mosquitto EXIT

start_mosquitto() {
    mosquitto -c "$OUT/mosquitto.conf" >>"$OUT/mosquitto.log" 2>&1 &
    MOSQUITTO_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "mosquitto did not listen on $PORT"
    return 1
}

rm -f "$OUT"/json/*.json
read -r -a CLIENT_LIST <<<"$CLIENTS"
for qos in $QOS; do
    for size in $SIZES; do
        stop_mosquitto
        start_mosquitto
        for round in $(seq "$ROUNDS"); do
            # Rotate the order: each client goes first in turn.
            count=${#CLIENT_LIST[@]}
            for i in $(seq 0 $((count - 1))); do
                client=${CLIENT_LIST[$(((i + round) % count))]}
                log "QoS $qos, $size B, round $round: $client"
                timeout $((DURATION + 60)) "$BENCH" -h 127.0.0.1 -p "$PORT" --pubs 1 --subs 0 \
                    -q "$qos" -s "$size" -d "$DURATION" -w "$WINDOW" --client "$client" \
                    --quiet --json "$OUT/json/$qos-$size-$round-$client.json" >&2 ||
                    log "run failed: QoS $qos, $size B, round $round, $client"
            done
        done
    done
done
stop_mosquitto
tables
