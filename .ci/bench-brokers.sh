#!/usr/bin/env bash
# The broker matrix of issue 12, against our broker, mosquitto and rumqttd, with the `mqtt-bench`
# example of mqtt-streaming-tokio as the load generator. Prints markdown tables (machine, load
# average, medians and spread over rounds) on stdout; everything else goes to stderr and to
# $OUT (the JSON of every run, the brokers' logs and configurations).
#
#   .ci/bench-brokers.sh                      # 3 rounds, 5 s per scenario, the raw generator
#   ROUNDS=5 DURATION=10 CLIENT=rumqttc .ci/bench-brokers.sh
#   .ci/bench-brokers.sh --tables-only        # the tables again, from $OUT/json
#
# Scenarios (each broker started fresh for each round, brokers interleaved, their order
# rotated from round to round):
#   idle     IDLE (1000) idle connections with one subscription each: broker memory per
#            connection (VmRSS delta, /proc/PID/status), measured first on the fresh broker;
#   fanin0   8 publishers -> 1 subscriber (bench/#), QoS 0, flat out: delivered/s;
#   fanin1   the same at QoS 1: delivered/s, loss, p99 latency;
#   pairs    50 publishers -> 50 subscribers, each pair on its own topic, QoS 1, flat out;
#   pairs2   the same at QoS 2 (PUBREC, PUBREL, PUBCOMP both ways);
#   fanout   1 publisher -> 50 subscribers, QoS 0, flat out (or FANOUT_RATE msg/s).
# Every timed scenario also reports the broker's CPU per delivery (utime + stime from
# /proc/PID/stat over the run, divided by the messages the subscribers received) and the load
# generator's own CPU per delivery (its process's, the same way) with its share of the two,
# so the split of the machine between the broker and the load is visible.
# Flat out means each publisher keeps WINDOW (64) messages in flight. 64-byte payloads.
#
# The brokers, all on 127.0.0.1 only, each stopped by its PID:
#   ours       target/release/mqtt-broker -p PORT (the `mqtt-broker` program, built here and run
#              directly so that the PID measured is the broker's, not cargo's);
#   mosquitto  installed with apt-get if missing; configuration written to $OUT/mosquitto.conf:
#                listener PORT 127.0.0.1
#                allow_anonymous true
#                set_tcp_nodelay true        (as ours and rumqttd: no Nagle delay)
#                max_queued_messages 1000000 (default 1000: QoS 1 fan-in would be dropped)
#                persistence false
#              (max_inflight_messages stays at its default, 20 per client);
#   rumqttd    `cargo install rumqttd --version 0.20.0 --root $OUT/rumqttd` from crates.io if missing
#              (skipped, and said so, when that fails); configuration $OUT/rumqttd.toml: the
#              crate's demo configuration reduced to one 3.1.1 listener on 127.0.0.1:PORT and one
#              5.0 listener on 127.0.0.1:PORT+10 (no console, no prometheus, no websockets),
#              router and connection limits as in the demo.
#
# Environment: ROUNDS (3), DURATION (5 s per timed scenario), CLIENT (raw, rumqttc or ours:
# what drives the load; default raw), MQTT (311 or 5), IDLE (1000), FANOUT_RATE (0: flat out),
# WINDOW (64), RUMQTTD_VERSION (0.20.0), BROKERS ("ours mosquitto rumqttd"; add `base` with
# OUR_BASE=path to another build of our broker for a before/after column), PORT (18830;
# mosquitto +1, rumqttd +2, base +3, rumqttd's MQTT 5 listener +12), OUT (target/bench-brokers),
# SCENARIOS ("idle fanin0 fanin1 pairs pairs2 fanout": a subset runs only those, e.g. "fanout").
#
# CLIENT: `raw` (the default) is mqtt-bench's generator without a client library: plain TCP
# connections writing pre-encoded packets and parsing the answers with a minimal borrowed
# decode (mqtt-proto's codec, not our client's or broker's session logic), so it favours no
# broker and, at about a fifth of rumqttc's CPU per message, leaves most of the two cores to
# the broker measured. `rumqttc` (the matrices of sessions 1 to 4) is a neutral client
# library but uses about 0.9 µs per message, as much as a third of the broker's, on the same
# cores; `ours` drives the load with our own client (not neutral: for client checks only).
#
# Every bench run is bounded by `timeout`; a broker that does not listen within 30 s is
# skipped for that round. The machine is not isolated: the load average is reported with the
# figures and must be read with them.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CLIENT=${CLIENT:-raw}
MQTT=${MQTT:-311}
IDLE=${IDLE:-1000}
FANOUT_RATE=${FANOUT_RATE:-0}
WINDOW=${WINDOW:-64}
RUMQTTD_VERSION=${RUMQTTD_VERSION:-0.20.0}
BROKERS=${BROKERS:-"ours mosquitto rumqttd"}
SCENARIOS=${SCENARIOS:-"idle fanin0 fanin1 pairs pairs2 fanout"}
PORT=${PORT:-18830}
OUT=${OUT:-target/bench-brokers}
mkdir -p "$OUT/json"
OUT=$(cd "$OUT" && pwd)
TABLES_ONLY=0
[ "${1:-}" = "--tables-only" ] && TABLES_ONLY=1

log() { echo "== $*" >&2; }

if [ "$TABLES_ONLY" = 0 ]; then
rm -f "$OUT"/json/*.json
log "building the mqtt-bench and mqtt-broker programs (release)"
cargo build --release -q -p mqtt-streaming-tokio --features cli --bin mqtt-bench --bin mqtt-broker >&2
BENCH=target/release/mqtt-bench
OUR_BROKER=target/release/mqtt-broker

available=()
for b in $BROKERS; do
  case $b in
    ours) available+=(ours) ;;
    mosquitto)
      if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
        log "installing mosquitto"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; } >&2 || true
      fi
      if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
        available+=(mosquitto)
      else
        log "mosquitto cannot be installed: skipped"
      fi
      ;;
    rumqttd)
      if [ ! -x "$OUT/rumqttd/bin/rumqttd" ]; then
        log "installing rumqttd from crates.io into $OUT/rumqttd (takes minutes)"
        # Not --locked: its lock file pins metrics 0.22.1, which newer compilers reject.
        timeout 1800 cargo install -q rumqttd --version "$RUMQTTD_VERSION" --root "$OUT/rumqttd" >&2 || true
      fi
      if [ -x "$OUT/rumqttd/bin/rumqttd" ]; then
        available+=(rumqttd)
      else
        log "rumqttd cannot be installed: skipped"
      fi
      ;;
    base)
      # Another build of our broker (OUR_BASE=path), e.g. the commit before a change, run in
      # the same interleaved rounds for a before/after comparison.
      if [ -x "${OUR_BASE:-}" ]; then available+=(base); else log "OUR_BASE not set: base skipped"; fi
      ;;
    *) log "unknown broker $b: skipped" ;;
  esac
done
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

cat >"$OUT/mosquitto.conf" <<EOF
listener $((PORT + 1)) 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 1000000
persistence false
EOF

cat >"$OUT/rumqttd.toml" <<EOF
id = 0

[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$((PORT + 2))"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:$((PORT + 12))"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
EOF

BROKER_PID=""
stop_broker() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$BROKER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  BROKER_PID=""
}
trap stop_broker EXIT
# Interrupted: stop the broker and end (a trap that only stopped the broker let the loop go on).
trap 'stop_broker; exit 130' INT TERM

port_of() {
  case $1 in
    ours) echo "$PORT" ;;
    base) echo $((PORT + 3)) ;;
    mosquitto) echo $((PORT + 1)) ;;
    rumqttd) if [ "$MQTT" = 5 ]; then echo $((PORT + 12)); else echo $((PORT + 2)); fi ;;
  esac
}

# Starts broker $1 in the background; sets BROKER_PID; fails when it does not listen in 30 s.
start_broker() {
  local name=$1 port
  port=$(port_of "$name")
  case $name in
    ours) "$OUR_BROKER" -p "$port" >>"$OUT/ours.log" 2>&1 & ;;
    base) "$OUR_BASE" -p "$port" >>"$OUT/base.log" 2>&1 & ;;
    mosquitto) "$MOSQUITTO" -c "$OUT/mosquitto.conf" >>"$OUT/mosquitto.log" 2>&1 & ;;
    rumqttd) "$OUT/rumqttd/bin/rumqttd" -c "$OUT/rumqttd.toml" >>"$OUT/rumqttd.log" 2>&1 & ;;
  esac
  BROKER_PID=$!
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "$name did not start listening on 127.0.0.1:$port"
  stop_broker
  return 1
}

# Runs one scenario: bench $1 (scenario name) $2 (broker) $3 (round), then the bench flags.
scenario() {
  local name=$1 broker=$2 round=$3
  shift 3
  case " $SCENARIOS " in *" $name "*) ;; *) return 0 ;; esac
  local json="$OUT/json/r$round-$broker-$name.json"
  log "round $round, $broker: $name"
  if ! timeout $((DURATION + 150)) "$BENCH" -p "$(port_of "$broker")" -V "$MQTT" \
    --client "$CLIENT" --broker-pid "$BROKER_PID" --quiet --json "$json" "$@" >&2; then
    log "round $round, $broker: $name failed (see above)"
  fi
}

for round in $(seq "$ROUNDS"); do
  n=${#available[@]}
  for k in $(seq 0 $((n - 1))); do
    broker=${available[$(((k + round - 1) % n))]}
    start_broker "$broker" || continue
    scenario idle "$broker" "$round" --idle "$IDLE" --hold 3
    # Let the broker finish closing the idle connections first. Once (raw generator, which
    # connects within milliseconds) rumqttd 0.20 dropped the next scenario's subscriber among
    # the idle connections it was closing, apparently because it had been given the
    # connection id of one of them (its log: "router-drop" for both, the same id).
    case " $SCENARIOS " in *" idle "*) sleep 2 ;; esac
    scenario fanin0 "$broker" "$round" --pubs 8 --subs 1 -q 0 -w "$WINDOW" -d "$DURATION" \
      -t 'bench/%i' -f 'bench/#'
    scenario fanin1 "$broker" "$round" --pubs 8 --subs 1 -q 1 -w "$WINDOW" -d "$DURATION" \
      -t 'bench/%i' -f 'bench/#'
    scenario pairs "$broker" "$round" --pubs 50 --subs 50 -q 1 -w "$WINDOW" -d "$DURATION" \
      -t 'pair/%i' -f 'pair/%i'
    scenario pairs2 "$broker" "$round" --pubs 50 --subs 50 -q 2 -w "$WINDOW" -d "$DURATION" \
      -t 'pair/%i' -f 'pair/%i'
    scenario fanout "$broker" "$round" --pubs 1 --subs 50 -q 0 -r "$FANOUT_RATE" -w "$WINDOW" \
      -d "$DURATION" -t 'fan/out' -f 'fan/out'
    stop_broker
  done
done
fi

log "tables"
python3 - "$OUT/json" "$ROUNDS" "$CLIENT" "$DURATION" "$FANOUT_RATE" "$IDLE" "$MQTT" <<'EOF'
import glob, json, os, platform, statistics, sys, datetime

folder, rounds, client, duration, fanout_rate, idle, mqtt = sys.argv[1:8]
runs = {}  # (scenario, broker) -> list of run dicts
loads, machine = [], None
for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
    rnd, broker, scenario = os.path.basename(path)[:-5].split("-", 2)
    with open(path) as f:
        report = json.load(f)
    machine = machine or report.get("machine")
    for r in report.get("runs", []) + report.get("idle", []):
        r["round"] = int(rnd[1:])
        runs.setdefault((scenario, broker), []).append(r)
        try:
            loads.append(float(r["loadavg"].split()[0]))
        except (KeyError, ValueError, IndexError):
            pass

brokers = [b for b in ("ours", "base", "mosquitto", "rumqttd") if any(k[1] == b for k in runs)]

def values(scenario, broker, get):
    out = []
    for r in runs.get((scenario, broker), []):
        v = get(r)
        if v is not None:
            out.append(v)
    return out

def human(v, unit):
    if unit == "rate":
        return f"{v / 1000:.0f}k" if v >= 10000 else f"{v / 1000:.1f}k"
    if unit == "us":
        return f"{v:.2f} µs"
    if unit == "ms":
        return f"{v / 1000:.1f} ms"
    if unit == "pct":
        return f"{v:.1f}%"
    if unit == "bytes":
        return f"{v / 1024:.1f} KB"
    return f"{v:g}"

def cell(vals, unit):
    if not vals:
        return "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return human(med, unit)
    return f"{human(med, unit)} ({human(min(vals), unit)}-{human(max(vals), unit)})"

def loss_pct(r):
    e = r.get("expected") or 0
    return 100.0 * r.get("lost", 0) / e if e else None

def per_delivery(key):
    def get(r):
        cpu, received = r.get(key), r.get("received") or 0
        return cpu * 1e6 / received if cpu is not None and received else None
    return get

def generator_share(r):
    own, broker = r.get("cpu_s"), r.get("broker_cpu_s")
    if own is None or broker is None or own + broker <= 0:
        return None
    return 100.0 * own / (own + broker)

broker_us = per_delivery("broker_cpu_s")
fanout_label = "1→50 QoS 0 " + (f"at {fanout_rate} msg/s" if float(fanout_rate) > 0 else "flat out")
rows = [
    ("8→1 QoS 0 flat out, delivered/s", "fanin0", lambda r: r.get("received_per_s"), "rate", True),
    ("8→1 QoS 0, lost (of sent)", "fanin0", loss_pct, "pct", None),
    ("8→1 QoS 0, broker CPU per delivery", "fanin0", broker_us, "us", False),
    ("8→1 QoS 1 flat out, delivered/s", "fanin1", lambda r: r.get("received_per_s"), "rate", True),
    ("8→1 QoS 1, lost (of sent)", "fanin1", loss_pct, "pct", None),
    ("8→1 QoS 1, p99 latency", "fanin1", lambda r: r["latency_us"].get("p99"), "ms", False),
    ("8→1 QoS 1, broker CPU per delivery", "fanin1", broker_us, "us", False),
    ("50 pairs QoS 1, delivered/s", "pairs", lambda r: r.get("received_per_s"), "rate", True),
    ("50 pairs QoS 1, p99 latency", "pairs", lambda r: r["latency_us"].get("p99"), "ms", False),
    ("50 pairs QoS 1, broker CPU per delivery", "pairs", broker_us, "us", False),
    ("50 pairs QoS 2, delivered/s", "pairs2", lambda r: r.get("received_per_s"), "rate", True),
    ("50 pairs QoS 2, lost (of sent)", "pairs2", loss_pct, "pct", None),
    ("50 pairs QoS 2, p99 latency", "pairs2", lambda r: r["latency_us"].get("p99"), "ms", False),
    ("50 pairs QoS 2, broker CPU per delivery", "pairs2", broker_us, "us", False),
    ("1→50 QoS 0, delivered/s", "fanout", lambda r: r.get("received_per_s"), "rate", True),
    ("1→50 QoS 0, lost (of sent × 50)", "fanout", loss_pct, "pct", None),
    (fanout_label + ", broker CPU per delivery", "fanout", broker_us, "us", False),
    (f"idle connection with one subscription, broker memory ({idle} connections)", "idle",
     lambda r: r.get("broker_rss_bytes_per_connection"), "bytes", False),
]
# The load generator's side of every timed scenario: its CPU per delivery and its share of
# the CPU the generator and the broker used together.
generator_rows = [
    ("8→1 QoS 0", "fanin0"),
    ("8→1 QoS 1", "fanin1"),
    ("50 pairs QoS 1", "pairs"),
    ("50 pairs QoS 2", "pairs2"),
    ("1→50 QoS 0", "fanout"),
]

load_text = (f"{min(loads):.1f} to {max(loads):.1f} (median {statistics.median(loads):.1f})"
             if loads else "unknown")
print(f"Broker matrix, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: "
      f"{machine}; 1-minute load average during the runs {load_text}. "
      f"Load generator: the `mqtt-bench` program "
      + ("with its raw generator (no client library)" if client == "raw" else f"driving {client}")
      + f" (MQTT {mqtt}), 64 B payloads, "
      f"{duration} s per timed scenario, medians of {rounds} interleaved rounds "
      f"(min-max in parentheses).")
print()
header = "| scenario | " + " | ".join(brokers) + (" | ours / rumqttd |" if "ours" in brokers and "rumqttd" in brokers else " |")
print(header)
print("|---" * (header.count("|") - 1) + "|")
for label, scenario, get, unit, higher_better in rows:
    if not any(k[0] == scenario for k in runs):
        continue  # not in SCENARIOS
    cells = [cell(values(scenario, b, get), unit) for b in brokers]
    line = f"| {label} | " + " | ".join(cells)
    if "ours" in brokers and "rumqttd" in brokers:
        a, b = values(scenario, "ours", get), values(scenario, "rumqttd", get)
        ratio = "-"
        if a and b and higher_better is not None and statistics.median(b) > 0:
            ratio = f"{statistics.median(a) / statistics.median(b):.2f}x"
            ratio += " (higher is better)" if higher_better else " (lower is better)"
        line += f" | {ratio}"
    print(line + " |")

print()
print("Load generator CPU per delivery and its share of the CPU the generator and the broker "
      "used together (generator / (generator + broker)):")
print()
header2 = "| scenario | " + " | ".join(brokers) + " |"
print(header2)
print("|---" * (header2.count("|") - 1) + "|")
gen_us = per_delivery("cpu_s")
for label, scenario in generator_rows:
    if not any(k[0] == scenario for k in runs):
        continue
    cells = []
    for b in brokers:
        us, share = values(scenario, b, gen_us), values(scenario, b, generator_share)
        cells.append(f"{cell(us, 'us')}, {cell(share, 'pct')}" if us else "-")
    print(f"| {label} | " + " | ".join(cells) + " |")

problems = []
for (scenario, broker), rs in sorted(runs.items()):
    for r in rs:
        if r.get("publish_errors") or r.get("subscriber_errors"):
            problems.append(f"{broker} {scenario} round {r.get('round')}: "
                            f"{r.get('publish_errors')} publish errors "
                            f"(first: {r.get('first_error')}), "
                            f"subscriber errors {r.get('subscriber_errors')}")
if problems:
    print()
    print("Errors during the runs:")
    for p in problems:
        print(f"- {p}")
EOF
