#!/usr/bin/env bash
# bench/run.sh: edged against nginx and HAProxy, side by side, on loopback.
# Run bench/setup.sh first (or `make bench`). Writes bench/results/<UTC>.md
# and .csv. Environment overrides:
#   ROUNDS=3 DURATION=5 SCENARIOS="direct h1 h1w2 h2 newconn isolation hung openloop reload reloadcost"
#   RELOAD_SECONDS=10  RC_SIZES="10:10 1000:10 1000:100 10000:10 10000:100"
#   A_QUEUE=32 (edged environment A's queue in the isolation scenarios)
#   A_QUEUE_BIG=1024 (a second edged row with a queue larger than the flood; 0 = skip)
#   A_REJECT=default (edged A's reject_delay: default = queue_timeout, at most 1s)
#   A_REJECT_OLD=0s (a third edged row with this reject_delay, "0s" = the instant
#     503 of before held rejections; "" = skip)
#   OPENLOOP_RATES="320 1600" (open-loop arrivals/s on A: 2x and 10x its 160 req/s)
#   HUNG_CLIENTS=128 (closed-loop clients on the hung proxy: 4x A's 32 workers)
#   HUNG_PAIRS=6 (hung: /ok measured in this many pairs of adjacent windows, as
#     B in the isolation scenario, the flood on /hung paused and resumed
#     between them; 0 = the layout before pairs: 2 windows alone, ISO_WINDOWS
#     during, 2 alone)
#   ISO_WARMUP=3 (openloop, and hung and isolation without pairs: seconds the
#     flood runs before B's loaded measurement; the open loop measures B during
#     them as its ramp)
#   ISO_WINDOW=2 (isolation, hung, openloop: B is measured in windows of
#     ISO_WINDOW seconds) ISO_WINDOWS=3 (openloop, and hung and isolation
#     without pairs: ISO_WINDOWS of them under load and 2 alone before and 2
#     after; p99s are medians of the windows; see below)
#   ISO_QUIET=3 (isolation: a window during which processes outside this run
#     took less than this % of one CPU is quiet; the quiet ratio uses those)
#   ISO_PAIRS=4 (isolation: B measured in this many pairs of adjacent windows,
#     alone and flooded, the flood's wrk paused and resumed between them; the
#     row's ratio is the median of the pairs' ratios; 0 = the layout before
#     pairs: 2 windows alone, ISO_WINDOWS flooded, 2 alone)
#   ISO_SETTLE=1.5 (isolation and hung with pairs: seconds after pausing the
#     flood before B's window alone (then until A has no request left, at most
#     3 s more; hung: 5 s, its response timeout), and after resuming it before
#     B's flooded window)
#   ISO_B_PACE=0 (isolation: milliseconds each of B's 16 connections waits
#     between an answer and its next request (wrk's delay()); 0: none, B as
#     fast as it is answered, which fills CPU 1, the CPU A's wrk and A's
#     backend share with it; 1: B at about half that rate)
#   ISO_A_WINDOW=3 (isolation with pairs: after the pairs, the flood runs this
#     many seconds with B idle; the proxy's CPU over A's answers then is
#     what an answer of A costs; 0 = skip)
#   ISO_BARE_ROUNDS=1 (isolation with pairs: in rounds up to this one, B is
#     measured once more after the flood's end, A with no connection at all,
#     beside the last pair's alone window: what A's idle connections cost)
#   ISO_SPLIT=on (isolation: one more row, haproxy-split: B on HAProxy as in
#     the haproxy row, A's flood sent to a second HAProxy process of its own
#     on the same CPU — a deployment per environment, what a shared
#     process is measured against; idle: the same, A's process started
#     under SCHED_IDLE (chrt --idle 0): it runs only when nothing else on
#     CPU 0 wants to, what a proxy that served A strictly after B would do;
#     off: no such row)
#   ISO_A_CLASS=normal (isolation and hung: the scheduling class of A's own
#     load generator (the flood's wrk) and A's backends (slow and hung), which
#     share CPU 1 with B's wrk and B's backend; idle: under SCHED_IDLE
#     (chrt --idle 0), run on CPU 1 only when B's load has nothing to run, as
#     if A's clients and A's backend were on other machines, as they are in
#     production; the proxies are unchanged. openloop's A has the slow
#     backend too, and so its class; its generator keeps the normal class:
#     it keeps a schedule and would fall behind it)
#   CONTENDERS="edged nginx haproxy" (who is measured; all three are started)
#   PORT_BASE=27100 (ports PORT_BASE+0..41 on 127.0.0.1)
#   BENCH_DIR=/tmp/edged-bench.XXXX (kept afterwards for inspection)
#   PROMETHEUS=on (off: environment B, that of the main scenarios, without
#     rules.prometheus, for the issue's figure without per-proxy metrics)
#   PROMETHEUS_B=$PROMETHEUS (the same for the EDGED_B instance: with
#     EDGED_B=bin/edged PROMETHEUS_B=off, one run measures edged with and
#     without rules.prometheus side by side, round by round)
#   EDGED=bin/edged (the edged binary; built when missing; to A/B two builds
#     in the other scenarios, alternate runs with CONTENDERS=edged)
#   EDGED_B= (a second edged binary: in h1, h1w2, h2, newconn and isolation it runs beside
#     the first as contender "edgedB" (and edgedB-qN, ...), ports
#     PORT_BASE+12..13, interleaved round by round, then the other CONTENDERS;
#     for A/B runs of two builds)
#   EDGED_B_SCENARIOS="h1 h1w2 h2 newconn isolation" (where EDGED_B runs; e.g.
#     "h1 h1w2" keeps a full run's other scenarios as they are)
#   SAME_HEADERS=on (nginx and HAProxy add the fields edged adds: X-Forwarded-Host,
#     Forwarded and X-Request-Id to the backend's request, X-Request-Id to the
#     answer; off: X-Forwarded-For/-Proto only, the job of runs before 5 December 04:00)
#   BACKEND=nethttp (the fast backend, what every proxy forwards h1, h1w2, h2,
#     newconn, B's and /ok's requests to, and direct's: nethttp = Go's net/http
#     server, 17-33 us a request alone, which with wrk fills CPU 1 before the proxy
#     fills CPU 0; lean = bench/backend -lean, a read loop of its own at
#     ~14 us, so that CPU 0 (the proxy) is what runs out first)
#   BACKEND_CPU=load (where the fast backend runs: load = CPU 1, beside wrk;
#     proxy = CPU 0, beside the proxy, so that wrk has CPU 1 to itself and
#     req/s is set by CPU 0: the proxy's cost plus the backend's, not the
#     generator's; a check of what limits h1's req/s, not the issue's layout)
#   SLOW_SPREAD=0 (A's slow backend answers after 200 ms; with SLOW_SPREAD=100ms
#     after 200 ms ± up to 100, drawn per request: a backend whose latency
#     varies, so that requests sent together no longer come back together)
#   H1_ROUNDS=$ROUNDS (rounds of h1 and h1w2, whose medians decide issue 14's
#     targets: more rounds there cost ~20 s each, in isolation minutes)
# All load goes to 127.0.0.1; every loop is bounded in count and time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
H1_ROUNDS=${H1_ROUNDS:-$ROUNDS}
PROMETHEUS=${PROMETHEUS:-on}
SAME_HEADERS=${SAME_HEADERS:-on}
BACKEND=${BACKEND:-nethttp}
case $BACKEND in nethttp) FAST_FLAGS=();; lean) FAST_FLAGS=(-lean);; *) echo "run.sh: BACKEND=$BACKEND: want nethttp or lean" >&2; exit 2;; esac
BACKEND_CPU=${BACKEND_CPU:-load}
case $BACKEND_CPU in load|proxy) ;; *) echo "run.sh: BACKEND_CPU=$BACKEND_CPU: want load or proxy" >&2; exit 2;; esac
case $SAME_HEADERS in on|off) ;; *) echo "run.sh: SAME_HEADERS=$SAME_HEADERS: want on or off" >&2; exit 2;; esac
SLOW_SPREAD=${SLOW_SPREAD:-0}
[[ $SLOW_SPREAD =~ ^(0|[0-9]+(\.[0-9]+)?(us|ms|s))$ ]] || { echo "run.sh: SLOW_SPREAD=$SLOW_SPREAD: want a duration such as 100ms (at most 200ms)" >&2; exit 2; }
DURATION=${DURATION:-5}
SCENARIOS=${SCENARIOS:-"direct h1 h1w2 h2 newconn isolation hung openloop reload reloadcost"}
RELOAD_SECONDS=${RELOAD_SECONDS:-10}
RC_SIZES=${RC_SIZES:-"10:10 1000:10 1000:100 10000:10 10000:100"}
A_QUEUE=${A_QUEUE:-32}   # edged environment A's queue in the isolation scenario
A_QUEUE_BIG=${A_QUEUE_BIG:-1024} # ... and in its second row, where the queue holds the whole flood
A_REJECT=${A_REJECT:-default}   # edged A's reject_delay ("default": the key is left out)
A_REJECT_OLD=${A_REJECT_OLD-0s} # ... and in a third row (the instant 503 of before); "" = no such row
OPENLOOP_RATES=${OPENLOOP_RATES:-"320 1600"}
HUNG_CLIENTS=${HUNG_CLIENTS:-128}
HUNG_PAIRS=${HUNG_PAIRS:-6}
ISO_WARMUP=${ISO_WARMUP:-3}
ISO_WINDOW=${ISO_WINDOW:-2}
ISO_WINDOWS=${ISO_WINDOWS:-3}
ISO_QUIET=${ISO_QUIET:-3}
ISO_PAIRS=${ISO_PAIRS:-4}
ISO_SETTLE=${ISO_SETTLE:-1.5}
ISO_BARE_ROUNDS=${ISO_BARE_ROUNDS:-1}
ISO_SPLIT=${ISO_SPLIT:-on}
case $ISO_SPLIT in on|idle|off) ;; *) echo "run.sh: ISO_SPLIT=$ISO_SPLIT: want on, idle or off" >&2; exit 2;; esac
IDLE_CLASS=(chrt --idle 0) # runs a process only when its CPU has nothing else to run (SCHED_IDLE)
ISO_A_CLASS=${ISO_A_CLASS:-normal}
case $ISO_A_CLASS in normal) A_CLASS=();; idle) A_CLASS=("${IDLE_CLASS[@]}");; *) echo "run.sh: ISO_A_CLASS=$ISO_A_CLASS: want normal or idle" >&2; exit 2;; esac
ISO_A_WINDOW=${ISO_A_WINDOW:-3} # isolation with pairs: seconds of A's flood with B idle, for A's CPU an answer (0 = none)
ISO_B_PACE=${ISO_B_PACE:-0} # isolation: ms each B connection waits between an answer and its next request (0 = none)
case $ISO_B_PACE in ''|*[!0-9]*) echo "run.sh: ISO_B_PACE=$ISO_B_PACE: want whole milliseconds" >&2; exit 2;; esac
ISO_DRAIN=2 # seconds after a flood, before B's second measurement alone: held and queued requests end
# A as the isolation scenario floods it (its /api/, backend slow); the hung
# scenario has its own (local to scen_hung): A_HBACKEND is the HAProxy backend whose sessions
# a_state counts as A's, A_WAIT the seconds iso_pause waits at most for A
# to have no request left once the flood is paused
A_HBACKEND=slow A_WAIT=3
B=${BENCH_DIR:-$(mktemp -d /tmp/edged-bench.XXXXXX)}
mkdir -p "$B"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
CSV="$RESULTS/$STAMP.csv"
MD="$RESULTS/$STAMP.md"
LUA="$ROOT/bench/report.lua"
TPL="$ROOT/bench/templates"
HZ=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Ports (loopback only), chosen away from the example's 8443/9901 and from
# what developers use by hand; PORT_BASE moves them all.
PB=${PORT_BASE:-27100}
FAST=$PB SLOW=$((PB + 1)) DIRECT=$((PB + 2)) HUNG=$((PB + 3))
E_PORT=$((PB + 10)) E_ADMIN=$((PB + 11)) N_PORT=$((PB + 20)) H_PORT=$((PB + 30)) RC_PORT=$((PB + 40)) RC_ADMIN=$((PB + 41))
N_STATUS=$((PB + 21)) H_STATS=$((PB + 31)) # plain-HTTP status of nginx (stub_status) and HAProxy (stats CSV), for A's state in isolation
H2_PORT=$((PB + 32)) H2_STATS=$((PB + 33)) # the second HAProxy of the isolation scenario's haproxy-split row (A's own process)
for p in $FAST $SLOW $DIRECT $HUNG $E_PORT $E_ADMIN $((PB + 12)) $((PB + 13)) $N_PORT $N_STATUS $H_PORT $H_STATS $H2_PORT $H2_STATS $RC_PORT $RC_ADMIN; do
  if ss -Hltn "sport = :$p" | grep -q .; then
    echo "run.sh: port $p is already in use (someone else's process?): set PORT_BASE" >&2; exit 1
  fi
done
PROXY_CPU=0 LOAD_CPU=1
if [ "$BACKEND_CPU" = proxy ]; then FAST_CPU=$PROXY_CPU; else FAST_CPU=$LOAD_CPU; fi

for s in $SCENARIOS; do
  case $s in direct|h1|h1w2|h2|newconn|isolation|hung|openloop|reload|reloadcost) ;; *) echo "run.sh: unknown scenario $s" >&2; exit 2;; esac
done
for tool in nginx haproxy wrk h2load taskset curl go; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool missing: run bench/setup.sh" >&2; exit 1; }
done
for h in test.acme.com a.test.acme.com b.test.acme.com; do
  getent hosts "$h" | grep -q '^127\.0\.0\.1' || { echo "run.sh: $h does not resolve to 127.0.0.1: run bench/setup.sh" >&2; exit 1; }
done

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- process bookkeeping: everything we start is killed on exit ----------
PIDS=()
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  sleep 0.3
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  # children of nginx/haproxy masters that a KILL of the master would orphan
  for pid in "${KIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  wait 2>/dev/null
  # an incomplete run leaves its raw data in the bench dir, not in results/
  if [ ! -s "$MD" ] && [ -f "$CSV" ]; then
    mv "$CSV" "$B/" 2>/dev/null && echo "run.sh: incomplete run; raw data kept in $B/$(basename "$CSV")" >&2
  fi
  exit $rc
}
KIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

unpid() { # unpid PID: PID has ended: the exit trap must not signal it (its number may be reused)
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, KILL
  local pid=$1 i kids
  kids=$(pgrep -P "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}

wait_http() { # wait_http URL [curl args...]: up to 10 s for a 2xx
  local url=$1; shift
  for i in $(seq 100); do
    if curl -sf -o /dev/null --max-time 1 "$@" "$url"; then return 0; fi
    sleep 0.1
  done
  echo "run.sh: $url did not answer" >&2; return 1
}

procs() { # procs MASTER_PID: the master and all its children
  echo "$1"; pgrep -P "$1" 2>/dev/null || true
}
us_per() { # us_per TICKS N [FORMAT]: CPU ticks as µs per one of N (0 when N is 0)
  awk -v c=$(( $1 * 1000000 / HZ )) -v n="$2" -v f="${3:-%.2f}" 'BEGIN{printf f, (n>0)? c/n : 0}'
}
cpu_busy_ticks() { # cpu_busy_ticks CPU: the CPU's ticks not idle (nor iowait) since boot, all processes
  awk -v c="cpu$1" '$1 == c {print $2+$3+$4+$7+$8+$9; exit}' /proc/stat
}
sleeps() { # sleeps PIDS: voluntary context switches of every thread of PIDS (each a wait for work)
  cat $(for p in "$@"; do echo /proc/$p/task/*/status; done) 2>/dev/null | awk '$1 == "voluntary_ctxt_switches:" {n += $2} END {print n+0}'
}
cpu_ticks() { # sum utime+stime over PIDs
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  echo $t
}
rss_kib() {
  local t=0 p v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    t=$((t + ${v:-0}))
  done
  echo $t
}
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

echo "scenario,contender,round,metric,value" > "$CSV"
rec() { echo "$1,$2,$3,$4,$5" >> "$CSV"; }

field() { # field NAME LINE: value of NAME=... in a BENCH line
  sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"
}

# ---- build and certificates ------------------------------------------------
log "bench dir $B"
cd "$ROOT"
if [ -z "${EDGED:-}" ]; then
  [ -x bin/edged ] || make -s build
  EDGED="$ROOT/bin/edged"
fi
[ -x "$EDGED" ] || { echo "run.sh: $EDGED is not executable" >&2; exit 1; }
EDGED_B=${EDGED_B:-}
EDGED_B_SCENARIOS=${EDGED_B_SCENARIOS:-"h1 h1w2 h2 newconn isolation"}
B_ON= # set per scenario: EDGED_B runs in it
go build -o "$B/backend" ./bench/backend
go build -o "$B/reloadcost" ./bench/reloadcost
go build -o "$B/openloop" ./bench/openloop
# One certificate for all contenders: test.acme.com and *.test.acme.com, made
# by devcerts from a one-group configuration of the bench's own.
mkdir -p "$B/certconf"
cat > "$B/certconf/certs.toml" <<TOML
[[environment]]
name = "bench"

[[env_group]]
name = "bench"
hostnames = ["test.acme.com", "*.test.acme.com"]
environments = ["bench"]

[[virtual_host]]
name = "bench"
cert_file = "$B/certs/test.acme.com.pem"
key_file = "$B/certs/test.acme.com.key"
TOML
go run ./tools/devcerts -c "$B/certconf" -dir "$B/certs" >/dev/null
CERT="$B/certs/test.acme.com.pem" KEY="$B/certs/test.acme.com.key" CA="$B/certs/ca.pem"
openssl x509 -in "$CERT" -noout -text | grep -q 'prime256v1\|P-256' || { echo "run.sh: certificate is not ECDSA P-256" >&2; exit 1; }

# ---- backends: on the load generator's CPU (the fast one: BACKEND_CPU) -----
taskset -c $FAST_CPU "$B/backend" "${FAST_FLAGS[@]}" -addr 127.0.0.1:$FAST & PIDS+=($!); BACK_FAST_PID=$!
taskset -c $LOAD_CPU "${A_CLASS[@]}" "$B/backend" -addr 127.0.0.1:$SLOW -delay 200ms -spread "$SLOW_SPREAD" & PIDS+=($!)
wait_http http://127.0.0.1:$FAST/api/x
taskset -c $LOAD_CPU "${A_CLASS[@]}" "$B/backend" -addr 127.0.0.1:$HUNG -delay 60s & PIDS+=($!)
wait_http http://127.0.0.1:$SLOW/api/x
for i in $(seq 100); do ss -Hltn "sport = :$HUNG" | grep -q . && break; sleep 0.1; done

# ---- contenders ------------------------------------------------------------
subst() { # subst TEMPLATE OUT key=value...
  local tpl=$1 out=$2; shift 2
  local args=() kv
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  [ "$SAME_HEADERS" = on ] || args+=(-e '/# same-headers$/d')
  sed "${args[@]}" "$tpl" > "$out"
}

EDGED_PID="" EDGEDB_PID="" NGINX_PID="" HAPROXY_PID="" HAPROXY2_PID=""
start_edged() { # start_edged GOMAXPROCS CPUS [B]: B = the EDGED_B binary as edgedB
  local d="$B/edged" bin=$EDGED port=$E_PORT admin=$E_ADMIN
  [ "${3:-}" = B ] && { d="$B/edgedB"; bin=$EDGED_B; port=$((PB + 12)); admin=$((PB + 13)); }
  mkdir -p "$d/conf.d" "$d/state"
  local common=(PORT=$port ADMIN=$admin STATE="$d/state" CERT="$CERT" KEY="$KEY" FAST=$FAST SLOW=$SLOW)
  subst "$TPL/edged/server.toml" "$d/conf.d/server.toml" "${common[@]}"
  local prom="[environment.rules.prometheus]" want=${PROMETHEUS:-on}
  [ "${3:-}" = B ] && want=${PROMETHEUS_B:-$want}
  [ "$want" = off ] && prom="# rules.prometheus left out (PROMETHEUS=off)"
  subst "$TPL/edged/b.toml" "$d/conf.d/b.toml" "${common[@]}" PROM="$prom"
  edged_a_toml "$d/conf.d/a.toml" 0 "$A_QUEUE" "$A_REJECT"
  "$bin" check -c "$d/conf.d" >/dev/null
  GOMAXPROCS=$1 taskset -c "$2" "$bin" serve -c "$d/conf.d" >>"$d/edged.log" 2>&1 &
  if [ "${3:-}" = B ]; then EDGEDB_PID=$!; else EDGED_PID=$!; fi
  PIDS+=($!)
  wait_http "http://127.0.0.1:$admin/readyz"
}
# edged_a_toml OUT GEN QUEUE REJECT: environment A's file for edged.
edged_a_toml() {
  local reject=""
  [ "$4" = default ] || reject="reject_delay = \"$4\""
  subst "$TPL/edged/a.toml" "$1" CERT="$CERT" KEY="$KEY" SLOW=$SLOW FAST=$FAST HUNG=$HUNG GEN="$2" AQUEUE="$3" AREJECT="$reject"
}
start_nginx() { # start_nginx WORKERS CPUS
  local d="$B/nginx"
  mkdir -p "$d/tmp"
  subst "$TPL/nginx.conf" "$d/nginx.conf" WORKERS=$1 DIR="$d" CERT="$CERT" KEY="$KEY" FAST=$FAST SLOW=$SLOW HUNG=$HUNG PORT=$N_PORT STATUS=$N_STATUS
  echo "# generation 0" > "$d/a-reload.conf"
  nginx -t -q -c "$d/nginx.conf" -p "$d" -e "$d/error.log"
  taskset -c "$2" nginx -c "$d/nginx.conf" -p "$d" -e "$d/error.log" & NGINX_PID=$!
  PIDS+=($NGINX_PID)
  wait_http "https://test.acme.com:$N_PORT/api/x" --cacert "$CA"
  KIDS+=($(pgrep -P $NGINX_PID))
}
start_haproxy() { # start_haproxy THREADS CPUS [2]: 2 = the second process (haproxy-split's A)
  local d="$B/haproxy" port=$H_PORT stats=$H_STATS idle=()
  if [ "${3:-}" = 2 ]; then
    d="$B/haproxy2" port=$H2_PORT stats=$H2_STATS
    # ISO_SPLIT=idle: A's process runs only when CPU 0 has nothing else to run
    [ "$ISO_SPLIT" = idle ] && idle=("${IDLE_CLASS[@]}")
  fi
  mkdir -p "$d"
  cat "$CERT" "$KEY" > "$d/cert.pem"
  subst "$TPL/haproxy.cfg" "$d/haproxy.cfg" THREADS=$1 DIR="$d" FAST=$FAST HUNG=$HUNG PORT=$port STATS=$stats
  subst "$TPL/haproxy-a.cfg" "$d/haproxy-a.cfg" SLOW=$SLOW GEN=0
  haproxy -c -q -f "$d/haproxy.cfg" -f "$d/haproxy-a.cfg"
  taskset -c "$2" "${idle[@]}" haproxy -W -f "$d/haproxy.cfg" -f "$d/haproxy-a.cfg" >>"$d/haproxy.log" 2>&1 &
  local pid=$!
  if [ "${3:-}" = 2 ]; then HAPROXY2_PID=$pid; else HAPROXY_PID=$pid; fi
  PIDS+=($pid)
  wait_http "https://test.acme.com:$port/api/x" --cacert "$CA"
  KIDS+=($(pgrep -P $pid))
}
start_all() { # start_all WORKERS CPUS
  start_edged "$1" "$2"; start_nginx "$1" "$2"; start_haproxy "$1" "$2"
}
stop_all() {
  local p
  for p in $EDGED_PID $EDGEDB_PID $NGINX_PID $HAPROXY_PID $HAPROXY2_PID; do stop_pid "$p"; done
  EDGED_PID="" EDGEDB_PID="" NGINX_PID="" HAPROXY_PID="" HAPROXY2_PID=""
}
port_of() { case $1 in edgedB*) echo $((PB + 12));; edged*) echo $E_PORT;; nginx*) echo $N_PORT;; haproxy*) echo $H_PORT;; esac; }
# flood_port_of WHO: where the isolation scenario sends A's flood: the
# port B is measured on, but for haproxy-split (A's own process)
flood_port_of() { case $1 in haproxy-split) echo $H2_PORT;; *) port_of "$1";; esac; }
pids_of() {
  case $1 in
    edgedB*) echo "$EDGEDB_PID";;
    edged*) echo "$EDGED_PID";;
    nginx*) procs "$NGINX_PID";;
    haproxy*) procs "$HAPROXY_PID";;
    backend) echo "$DIRECT_PID";;
  esac
}
read -r -a CONTENDERS <<<"${CONTENDERS:-edged nginx haproxy}"
for who in "${CONTENDERS[@]}"; do
  case $who in edged|nginx|haproxy) ;; *) echo "run.sh: unknown contender $who" >&2; exit 2;; esac
done

# measure_wrk SCEN CONTENDER ROUND URL WRKARGS...: one wrk run with CPU/RSS of
# the contender's processes; records everything; prints the BENCH line.
measure_wrk() {
  local scen=$1 who=$2 round=$3 url=$4; shift 4
  local pids; pids=$(pids_of "$who")
  local t0 t1 rss out line b0 b1 l0 l1 w0 w1 s0 s1
  t0=$(cpu_ticks $pids); b0=$(cpu_ticks $BACK_FAST_PID); l0=$(cpu_busy_ticks $LOAD_CPU); w0=$(date +%s%N); s0=$(sleeps $pids)
  ( sleep $(( (DURATION + 1) / 2 )); rss_kib $pids > "$B/rss.$$" ) &
  local sampler=$!
  out=$(taskset -c $LOAD_CPU wrk -d${DURATION}s --timeout 5s --latency -s "${WRK_LUA:-$LUA}" "$@" "$url" 2>&1) || true
  wait $sampler 2>/dev/null || true
  t1=$(cpu_ticks $pids); b1=$(cpu_ticks $BACK_FAST_PID); l1=$(cpu_busy_ticks $LOAD_CPU); w1=$(date +%s%N); s1=$(sleeps $pids)
  line=$(grep '^BENCH' <<<"$out" || true)
  if [ -z "$line" ]; then echo "run.sh: wrk failed: $out" >&2; return 1; fi
  non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' <<<"$out"); non2xx=${non2xx:-0}
  local req; req=$(field requests "$line")
  local cpu_us=$(( (t1 - t0) * 1000000 / HZ ))
  rec "$scen" "$who" "$round" rps "$(field rps "$line")"
  rec "$scen" "$who" "$round" p50_ms "$(awk -v v="$(field p50_us "$line")" 'BEGIN{printf "%.3f", v/1000}')"
  rec "$scen" "$who" "$round" p99_ms "$(awk -v v="$(field p99_us "$line")" 'BEGIN{printf "%.3f", v/1000}')"
  rec "$scen" "$who" "$round" p999_ms "$(awk -v v="$(field p999_us "$line")" 'BEGIN{printf "%.3f", v/1000}')"
  rec "$scen" "$who" "$round" cpu_us_per_req "$(us_per $((t1 - t0)) "$req")"
  rec "$scen" "$who" "$round" rss_mib "$(awk -v k="$(cat "$B/rss.$$")" 'BEGIN{printf "%.1f", k/1024}')"
  rec "$scen" "$who" "$round" requests "$req"
  rec "$scen" "$who" "$round" errors "$(( $(field err_connect "$line") + $(field err_read "$line") + $(field err_write "$line") + $(field err_timeout "$line") ))"
  rec "$scen" "$who" "$round" non2xx "$non2xx"
  case $scen in h1|h1w2)
    # the backend's share of CPU 1: what a request the proxy forwards
    # costs the backend (the fields it parses among it)
    rec "$scen" "$who" "$round" backend_cpu_us_per_req "$(us_per $((b1 - b0)) "$req")"
    # how often the proxy ran out of work and slept (its threads'
    # voluntary context switches): each sleep is a wake-up to pay
    rec "$scen" "$who" "$round" proxy_sleeps_per_req "$(awk -v s=$((s1 - s0)) -v n="$req" 'BEGIN{printf "%.3f", (n>0)? s/n : 0}')";;
  esac
  # With the proxy alone on CPU 0 (h1), the rest of CPU 1 is wrk's (and
  # whatever else ran there): what an answer as the proxy sends it costs
  # the load generator, and whether CPU 1 was full (then req/s is the
  # generator's limit, not the proxy's)
  if [ "$scen" = h1 ]; then
    rec "$scen" "$who" "$round" load_cpu_busy_pct "$(awk -v b=$((l1 - l0)) -v ns=$((w1 - w0)) -v hz="$HZ" 'BEGIN{printf "%.1f", 100*b/hz/(ns/1e9)}')"
    local wrk_ticks=$((l1 - l0)); [ "$FAST_CPU" = "$LOAD_CPU" ] && wrk_ticks=$((wrk_ticks - (b1 - b0)))
    rec "$scen" "$who" "$round" wrk_cpu_us_per_req "$(us_per $wrk_ticks "$req")"
  fi
  echo "$line non2xx=$non2xx cpu_us=$cpu_us"
}

# ---- scenarios -------------------------------------------------------------
scen_direct() {
  log "direct: backend alone on CPU $PROXY_CPU, plain HTTP, wrk -t1 -c64"
  taskset -c $PROXY_CPU "$B/backend" "${FAST_FLAGS[@]}" -addr 127.0.0.1:$DIRECT & DIRECT_PID=$!; PIDS+=($DIRECT_PID)
  wait_http "http://127.0.0.1:$DIRECT/api/x"
  for r in $(seq "$ROUNDS"); do
    measure_wrk direct backend "$r" "http://127.0.0.1:$DIRECT/api/x" -t1 -c64 >/dev/null
  done
  stop_pid "$DIRECT_PID"
}

# round_order R: who is measured in round R: CONTENDERS; with EDGED_B here,
# edged and edgedB first, taking turns by round, then the others
# CONTENDERS names (CONTENDERS="edged nginx": no HAProxy).
round_order() {
  if [ -z "$B_ON" ]; then echo "${CONTENDERS[@]}"; return; fi
  local others=() c
  for c in "${CONTENDERS[@]}"; do [ "$c" = edged ] || others+=("$c"); done
  if [ $(($1 % 2)) = 1 ]; then echo edged edgedB "${others[@]}"; else echo edgedB edged "${others[@]}"; fi
}

scen_h1() { # scen_h1 NAME WORKERS CPUS
  local name=$1
  log "$name: HTTPS/1.1 keep-alive, wrk -t1 -c64, $2 worker(s) on CPU $3"
  start_all "$2" "$3"
  [ -n "$B_ON" ] && start_edged "$2" "$3" B
  for r in $(seq "$H1_ROUNDS"); do
    for who in $(round_order "$r"); do
      measure_wrk "$name" "$who" "$r" "https://test.acme.com:$(port_of $who)/api/x" -t1 -c64 >/dev/null
    done
  done
  stop_all
}

scen_h2() {
  log "h2: HTTP/2 over TLS, h2load -c16 -m16 -D $DURATION"
  start_all 1 $PROXY_CPU
  [ -n "$B_ON" ] && start_edged 1 $PROXY_CPU B
  for r in $(seq "$ROUNDS"); do
    for who in $(round_order "$r"); do
      local pids t0 t1 out done_ rps
      pids=$(pids_of $who)
      t0=$(cpu_ticks $pids)
      ( sleep $(( (DURATION + 1) / 2 )); rss_kib $pids > "$B/rss.$$" ) & local sampler=$!
      out=$(taskset -c $LOAD_CPU h2load -c16 -m16 -t1 -D "$DURATION" "https://test.acme.com:$(port_of $who)/api/x" 2>&1) || true
      wait $sampler 2>/dev/null || true
      t1=$(cpu_ticks $pids)
      done_=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
      rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
      if [ -z "$done_" ]; then echo "run.sh: h2load failed: $out" >&2; continue; fi
      rec h2 "$who" "$r" rps "$rps"
      rec h2 "$who" "$r" requests "$done_"
      rec h2 "$who" "$r" cpu_us_per_req "$(us_per $((t1 - t0)) "$done_")"
      rec h2 "$who" "$r" rss_mib "$(awk -v k="$(cat "$B/rss.$$")" 'BEGIN{printf "%.1f", k/1024}')"
      rec h2 "$who" "$r" mean_ms "$(awk '/^time for request:/{v=$5; u=v; sub(/[0-9.]+/,"",u); sub(/[a-z]+$/,"",v); if(u=="us")v/=1000; if(u=="s")v*=1000; printf "%.3f", v}' <<<"$out")"
      rec h2 "$who" "$r" failed "$(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' <<<"$out")"
    done
  done
  stop_all
}

scen_newconn() {
  log "newconn: a new TLS connection per request (Connection: close), wrk -t1 -c32"
  start_all 1 $PROXY_CPU
  [ -n "$B_ON" ] && start_edged 1 $PROXY_CPU B
  for r in $(seq "$ROUNDS"); do
    for who in $(round_order "$r"); do
      measure_wrk newconn "$who" "$r" "https://test.acme.com:$(port_of $who)/api/x" -t1 -c32 -H "Connection: close" >/dev/null
    done
  done
  stop_all
}

# edged_rows: edged's extra rows in the isolation scenarios: A's queue
# larger than the flood (edged-qN), and A's rejections at once as before
# held rejections (edged-dD).
edged_rows() {
  [[ " ${CONTENDERS[*]} " == *" edged "* ]] || return 0
  if [ "$A_QUEUE_BIG" != 0 ]; then echo "edged-q$A_QUEUE_BIG"; fi
  if [ -n "$A_REJECT_OLD" ]; then echo "edged-d$A_REJECT_OLD"; fi
}
# edged_row_apply WHO: make edged's environment A what row WHO measures
# (queue, reject_delay), by edged's own reload when it changes.
EDGED_A_NOW="$A_QUEUE/$A_REJECT" EDGEDB_A_NOW="$A_QUEUE/$A_REJECT"
edged_row_apply() {
  local want b="" now=EDGED_A_NOW
  case $1 in edgedB*) b=B now=EDGEDB_A_NOW;; esac
  case ${1/#edgedB/edged} in
    edged-q*) want="$A_QUEUE_BIG/$A_REJECT";;
    edged-d*) want="$A_QUEUE/${1#edged*-d}";;
    edged) want="$A_QUEUE/$A_REJECT";;
    *) return 0;;
  esac
  if [ "$want" != "${!now}" ]; then
    set_edged_a "${want%%/*}" "${want#*/}" $b; printf -v "$now" %s "$want"
  fi
}

# The isolation scenarios (isolation, hung, openloop) compare B's p99 under
# a neighbour's flood with B's p99 alone, on a box where other work comes
# and goes: a few seconds of someone's build in one measurement multiply
# its p99 by 10-50, alone or flooded, and a ratio of two single runs then
# says more about the box than about the proxy. So B is measured in
# windows of ISO_WINDOW seconds: 2 alone before the flood, ISO_WINDOWS
# during it, 2 alone after it (ISO_DRAIN seconds after the flood ends, once
# held and queued requests are answered); each p99 is the median of its
# windows (alone: of the 4, before and after), so that a disturbance in
# fewer than half of them does not decide the ratio, and a drift of the
# box over the row weighs on both sides. The flood runs ISO_WARMUP seconds
# before B's loaded windows, the same for every contender: what is
# compared is the flood's steady state (the open loop measures B during
# those seconds too, reported apart as its ramp).
#
# What disturbs a window on this box is other people's work: builds and
# tests outside the bench lock, which only ever add latency. So each window
# also measures it: foreign_pct is the CPU time (user + system + steal, both
# CPUs) spent during the window by processes that are not this run's (not
# in run.sh's process group), in % of one CPU. A row's quiet ratio
# (p99_ratio_quiet) takes the medians over the windows whose foreign_pct is
# below ISO_QUIET only, on each side; the ratio of all windows is kept
# beside it, and the counts of quiet windows say how much it rests on.
#
# Quiet by foreign_pct is not enough: with others' CPU at 0, B alone still
# moves ×2 from one window to the next and its req/s 13k-23k from row to
# row (the hypervisor, neighbours). So the isolation scenario (ISO_PAIRS >
# 0) measures B in pairs of adjacent windows, one alone and one flooded, a
# few seconds apart, so that a drift slower than a pair cancels: the
# flood's wrk starts once per row and is paused (SIGSTOP: its 256
# connections stay open and idle, no new handshakes) and resumed
# (SIGCONT); a pair's ratio is its flooded p99 ÷ its alone p99, and the
# row's is the median of its pairs'. Pairs alternate alone-first and
# flooded-first, so a trend within a pair weighs on both sides. What is
# left is each window's own noise, which only more measured time reduces
# (bench/README gives the figures). pairs has the details; the hung
# scenario measures /ok in pairs too (HUNG_PAIRS), the open loop keeps the
# layout above (see bench/README).
windows() { # windows N SCEN CONTENDER ROUND URL WRKARGS...: N wrk runs of ISO_WINDOW s, their BENCH lines
  local n=$1 i f0 f1 line; shift
  for i in $(seq "$n"); do
    f0=$(foreign_ticks)
    line=$(DURATION=$ISO_WINDOW measure_wrk "$@") || true
    f1=$(foreign_ticks)
    [ -n "$line" ] && echo "$line foreign_pct=$(foreign_pct "$f0" "$f1")"
  done
}
RUN_PGRP=$(awk '{sub(/.*\) /, ""); print $3}' /proc/$$/stat)
foreign_ticks() { # CPU ticks of the whole box (user, nice, system, steal) minus those of this run's processes
  cat /proc/stat /proc/[0-9]*/stat 2>/dev/null | awk -v pg="$RUN_PGRP" '
    /^cpu / { busy = $2 + $3 + $4 + $9; next }
    /^cpu|^intr|^ctxt|^btime|^processes|^procs_|^softirq/ { next }
    { s = $0; sub(/.*\) /, "", s); split(s, f, " ")
      # f[3] = pgrp; utime, stime, cutime, cstime: children reaped inside
      # the group count with their parent (run.sh reaps every wrk)
      if (f[3] == pg) ours += f[12] + f[13] + f[14] + f[15] }
    END { printf "%d\n", busy - ours }'
}
foreign_pct() { # foreign_pct F0 F1: others' CPU between two foreign_ticks readings, in % of one CPU over a window
  awk -v t=$(($2 - $1)) -v hz="$HZ" -v w="$ISO_WINDOW" 'BEGIN{v=100*t/hz/w; printf "%.1f", (v>0)? v : 0}'
}
quiet_lines() { # quiet_lines LINES: the BENCH lines whose window had foreign_pct below ISO_QUIET
  local l
  while read -r l; do
    [ -n "$l" ] && awk -v f="$(field foreign_pct "$l")" -v q="$ISO_QUIET" 'BEGIN{exit !(f != "" && f + 0 < q + 0)}' && echo "$l"
  done <<<"$1"
  return 0
}
count_lines() { grep -c . <<<"$1" || true; }
median_of() { # median_of FIELD LINES: median of FIELD over the BENCH lines
  local l
  while read -r l; do [ -z "$l" ] || field "$1" "$l"; done <<<"$2" |
    sort -g | awk '{v[NR]=$1} END{if(NR==0){print 0} else if(NR%2){print v[(NR+1)/2]} else {printf "%.0f\n", (v[NR/2]+v[NR/2+1])/2}}'
}
min_of() { # min_of FIELD LINES: least FIELD over the BENCH lines
  local l
  while read -r l; do [ -z "$l" ] || field "$1" "$l"; done <<<"$2" | sort -g | head -1
}
max_of() { # max_of FIELD LINES: greatest FIELD over the BENCH lines (0 if none)
  local l
  while read -r l; do [ -z "$l" ] || field "$1" "$l"; done <<<"$2" | sort -g | awk '{v=$1} END{print v+0}'
}
median_args() { # median_args V...: the median of the values, 2 decimals
  printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{if(NR==0){exit} if(NR%2){printf "%.2f\n", v[(NR+1)/2]} else {printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}}'
}
sum_errors() { # sum_errors LINES: socket errors and non-2xx over the BENCH lines
  local l t=0
  while read -r l; do
    [ -n "$l" ] || continue
    t=$(( t + $(field err_connect "$l") + $(field err_read "$l") + $(field err_write "$l") + $(field err_timeout "$l") + $(field non2xx "$l") ))
  done <<<"$1"
  echo $t
}
ms() { awk -v v="$1" 'BEGIN{printf "%.3f", v/1000}'; }
ratio() { awk -v a="$1" -v f="$2" 'BEGIN{printf "%.2f", (a>0)? f/a : 0}'; }
LOADED=$((ISO_WINDOWS * ISO_WINDOW))

scen_isolation() {
  if [ "$ISO_PAIRS" -gt 0 ]; then
    log "isolation: A (slow, 32 in flight) flooded by wrk -c256, paused and resumed; wrk -c16 measures B in $ISO_PAIRS alone/flooded pairs a row"
  else
    log "isolation: A (slow, 32 in flight) flooded by wrk -c256 while wrk -c16 measures B (windows before, during, after)"
  fi
  start_all 1 $PROXY_CPU
  EDGED_A_NOW="$A_QUEUE/$A_REJECT" EDGEDB_A_NOW="$A_QUEUE/$A_REJECT"
  local whos=("${CONTENDERS[@]}") rows row split=()
  rows=($(edged_rows))
  whos+=("${rows[@]}")
  if [ "$ISO_SPLIT" != off ] && [[ " ${CONTENDERS[*]} " == *" haproxy "* ]]; then
    split=(haproxy-split)
    start_haproxy 1 $PROXY_CPU 2
  fi
  whos+=("${split[@]}")
  [ -n "$B_ON" ] && start_edged 1 $PROXY_CPU B
  # B paced (ISO_B_PACE ms between an answer and the next request of a
  # connection): B no longer fills CPU 1, which it shares with A's wrk and
  # A's backend
  local WRK_LUA=$LUA
  if [ "$ISO_B_PACE" -gt 0 ]; then
    WRK_LUA="$B/paced.lua"
    { cat "$LUA"; echo "delay = function() return $ISO_B_PACE end"; } > "$WRK_LUA"
  fi
  for r in $(seq "$ROUNDS"); do
    if [ -n "$B_ON" ]; then
      # each edged row beside the same row of edgedB, who goes first
      # alternating round by round; nginx and HAProxy after them
      whos=()
      for row in edged "${rows[@]}"; do
        if [ $((r % 2)) = 1 ]; then whos+=("$row" "edgedB${row#edged}"); else whos+=("edgedB${row#edged}" "$row"); fi
      done
      for row in "${CONTENDERS[@]}"; do [ "$row" = edged ] || whos+=("$row"); done
      whos+=("${split[@]}")
    fi
    for who in "${whos[@]}"; do
      edged_row_apply "$who"
      if [ "$ISO_PAIRS" -gt 0 ]; then iso_row_pairs "$who" "$r"; else iso_row_windows "$who" "$r"; fi
    done
  done
  stop_all
}

# iso_rec_windows WHO ROUND ALONE FLOODED: the row's figures that compare
# B's windows alone with B's windows flooded as two sets (each side's
# median, least and quiet windows), whichever layout measured them.
iso_rec_windows() {
  local who=$1 r=$2 alone=$3 flood=$4 p_alone p_flood
  p_alone=$(median_of p99_us "$alone"); p_flood=$(median_of p99_us "$flood")
  rec isolation "$who" "$r" p99_alone_ms "$(ms "$p_alone")"
  rec isolation "$who" "$r" p99_flooded_ms "$(ms "$p_flood")"
  rec isolation "$who" "$r" p99_ratio "$(ratio "$p_alone" "$p_flood")"
  # the least disturbed windows' ratio: foreign load on the box only
  # adds latency, so each side's lowest window p99 is its best
  # estimate on a quiet box (see above)
  rec isolation "$who" "$r" p99_ratio_min "$(ratio "$(min_of p99_us "$alone")" "$(min_of p99_us "$flood")")"
  local qa qf; qa=$(quiet_lines "$alone"); qf=$(quiet_lines "$flood")
  rec isolation "$who" "$r" quiet_alone "$(count_lines "$qa")"
  rec isolation "$who" "$r" quiet_flooded "$(count_lines "$qf")"
  rec isolation "$who" "$r" foreign_pct "$(awk -v v="$(median_of foreign_pct "$alone"$'\n'"$flood")" 'BEGIN{printf "%.1f", v}')"
  if [ -n "$qa" ] && [ -n "$qf" ]; then
    rec isolation "$who" "$r" p99_ratio_quiet "$(ratio "$(median_of p99_us "$qa")" "$(median_of p99_us "$qf")")"
  fi
  rec isolation "$who" "$r" b_rps_alone "$(median_of rps "$alone")"
  rec isolation "$who" "$r" b_rps_flooded "$(median_of rps "$flood")"
  rec isolation "$who" "$r" b_errors_flooded "$(sum_errors "$flood")"
}

# beside_flood WHO ROUND URL ALONE_SCEN DURING_SCEN OUT FLOOD_URL CLIENTS
# TIMEOUT: B's windows (wrk -c16 on URL) around a closed-loop flood of
# CLIENTS wrk connections on FLOOD_URL (its output in OUT): 2 alone, a
# fresh flood, ISO_WARMUP, ISO_WINDOWS during it, the flood's end,
# ISO_DRAIN, 2 alone. Sets W_ALONE (the 4 alone windows' BENCH lines) and
# W_DURING.
beside_flood() {
  local who=$1 r=$2 url=$3 fl
  W_ALONE=$(windows 2 "$4" "$who" "$r" "$url" -t1 -c16)
  taskset -c $LOAD_CPU wrk -t1 -c"$8" -d$((ISO_WARMUP + LOADED + 1))s --timeout "$9" -s "$LUA" "$7" > "$6" 2>&1 &
  fl=$!
  sleep "$ISO_WARMUP"
  W_DURING=$(windows "$ISO_WINDOWS" "$5" "$who" "$r" "$url" -t1 -c16)
  wait $fl || true
  sleep $ISO_DRAIN
  W_ALONE+=$'\n'"$(windows 2 "$4" "$who" "$r" "$url" -t1 -c16)"
}

# iso_row_windows WHO ROUND: one isolation row as measured before pairs
# (ISO_PAIRS=0): 2 windows alone, a fresh flood, ISO_WARMUP, ISO_WINDOWS
# flooded windows, the flood's end, ISO_DRAIN, 2 windows alone.
iso_row_windows() {
  local who=$1 r=$2 port; port=$(port_of $who)
  local alone flood
  beside_flood "$who" "$r" "https://b.test.acme.com:$port/api/x" iso_b_alone iso_b_flooded \
    "$B/flood.out" "https://a.test.acme.com:$(flood_port_of $who)/api/x" 256 5s
  alone=$W_ALONE flood=$W_DURING
  local fline; fline=$(grep '^BENCH' "$B/flood.out" || true)
  local fnon; fnon=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$B/flood.out"); fnon=${fnon:-0}
  local a_rps a_non; a_rps=$(field rps "$fline")
  a_non=$(awk -v n="$fnon" -v d="$(field duration_us "$fline")" 'BEGIN{printf "%.1f", (d>0)? n/(d/1e6) : 0}')
  rec iso_a_flood "$who" "$r" rps "$a_rps"
  rec iso_a_flood "$who" "$r" non2xx_per_s "$a_non"
  rec iso_a_flood "$who" "$r" p99_ms "$(awk -v v="$(field p99_us "$fline")" 'BEGIN{printf "%.3f", v/1000}')"
  iso_rec_windows "$who" "$r" "$alone" "$flood"
  rec isolation "$who" "$r" a_non2xx_per_s "$a_non"
  rec isolation "$who" "$r" a_rps "$a_rps"
}

# a_state WHO: "BUSY COUNT" of environment A in WHO's proxy now: BUSY =
# A's requests inside it (in a worker, queued or held), COUNT = a running
# count of answered requests (edged: A's own, edged_requests_total;
# nginx, HAProxy: all of the server's, B's included, which iso_window
# takes out). HAProxy's BUSY is backend A_HBACKEND's sessions.
a_state() {
  local out=""
  case $1 in
    edgedB*) out=$(curl -s --max-time 2 "http://127.0.0.1:$((PB + 13))/metrics" || true);;
    edged*) out=$(curl -s --max-time 2 "http://127.0.0.1:$E_ADMIN/metrics" || true);;
    nginx*) out=$(curl -s --max-time 2 "http://127.0.0.1:$N_STATUS/status" || true);;
    haproxy-split) out=$(curl -s --max-time 2 "http://127.0.0.1:$H2_STATS/stats;csv" || true);;
    haproxy*) out=$(curl -s --max-time 2 "http://127.0.0.1:$H_STATS/stats;csv" || true);;
  esac
  case $1 in
    edged*) awk '
      /^edged_pool_in_flight\{env="a"[,}]/ || /^edged_pool_queued\{env="a"[,}]/ || /^edged_environment_requests_held\{env="a"[,}]/ { b += $NF }
      /^edged_requests_total\{env="a",class=/ { t += $NF }
      END { printf "%d %d\n", b, t }' <<<"$out";;
    nginx*) # stub_status: Writing counts this request too
      awk '/^ *[0-9]+ +[0-9]+ +[0-9]+ *$/ {t = $3} /^Reading:/ {w = $4 - 1} END {printf "%d %d\n", w, t}' <<<"$out";;
    haproxy*) awk -F, -v be="$A_HBACKEND" '
      NR == 1 { for (i = 1; i <= NF; i++) { h = $i; sub(/^# */, "", h); c[h] = i }; next }
      $1 == be && $2 == "BACKEND" { b = $c["scur"] } # its queued ones included
      $1 == "fe" && $2 == "FRONTEND" { t = $c["req_tot"] }
      END { printf "%d %d\n", b, t }' <<<"$out";;
    *) echo "0 0";;
  esac
}

# iso_window SCEN WHO ROUND URL WRKARGS...: one window of B, as windows
# does (foreign_pct appended), plus a_busy (A's requests inside the proxy
# at the window's start) and a_rps (A's answers a second over the window).
iso_window() {
  local who=$2 s0 s1 t0 t1 f0 f1 line
  s0=$(a_state "$who"); t0=$(date +%s%N)
  f0=$(foreign_ticks)
  line=$(DURATION=$ISO_WINDOW measure_wrk "$@") || true
  f1=$(foreign_ticks)
  s1=$(a_state "$who"); t1=$(date +%s%N)
  [ -n "$line" ] || return 0
  local b_req=0
  # (haproxy-split: A's process counts A's requests only)
  case $who in nginx*) b_req=$(( $(field requests "$line") + 1 ));; haproxy-split) ;; haproxy*) b_req=$(field requests "$line");; esac
  echo "$line foreign_pct=$(foreign_pct "$f0" "$f1") a_busy=${s0%% *} a_rps=$(awk -v n=$(( ${s1#* } - ${s0#* } - b_req )) -v ns=$((t1 - t0)) 'BEGIN{v=n/(ns/1e9); printf "%.1f", (v>0)? v : 0}')"
}

# iso_pause WHO FLOODPID / iso_resume WHO FLOODPID: stop the flood's wrk
# (SIGSTOP: its 256 connections stay open, idle) and wait until A has no
# request left in the proxy; start it again (SIGCONT) and give A ISO_SETTLE
# seconds to be back at its steady state. iso_pause prints A's requests
# still inside the proxy ISO_SETTLE seconds after the stop (0 when settled).
iso_pause() {
  kill -STOP "$2"
  sleep "$ISO_SETTLE"
  local st busy i
  st=$(a_state "$1"); busy=${st%% *}
  echo "${busy:-0}"
  # held, queued or in flight still: wait for them, at most A_WAIT s more
  for i in $(seq $((A_WAIT * 10))); do
    [ "${busy:-0}" -le 0 ] && break
    sleep 0.1; st=$(a_state "$1"); busy=${st%% *}
  done
}
iso_resume() {
  kill -CONT "$2"
  sleep "$ISO_SETTLE"
}

# iso_a_alone WHO ROUND: ISO_A_WINDOW seconds of A's flood with B idle:
# the proxy's CPU over A's answers in that time (its own counters), i.e.
# what one of A's answers (served, held or timed out, in the row's mix)
# costs the process B shares, beside A's answers a second.
iso_a_alone() {
  local who=$1 r=$2 pids s0 s1 c0 c1 t0 t1
  pids=$(pids_of "$who")
  [ "$who" = haproxy-split ] && pids=$(procs "$HAPROXY2_PID") # A's own process
  s0=$(a_state "$who"); c0=$(cpu_ticks $pids); t0=$(date +%s%N)
  sleep "$ISO_A_WINDOW"
  s1=$(a_state "$who"); c1=$(cpu_ticks $pids); t1=$(date +%s%N)
  local n=$(( ${s1#* } - ${s0#* } ))
  rec isolation "$who" "$r" a_cpu_us_per_answer "$(us_per $((c1 - c0)) $n %.1f)"
  rec isolation "$who" "$r" a_rps_b_idle "$(awk -v n=$n -v ns=$((t1 - t0)) 'BEGIN{printf "%.1f", n/(ns/1e9)}')"
}

# pairs WHO ROUND FLOODPID N URL ALONE_SCEN FLOODED_SCEN PAIR_SCEN: B's
# windows (iso_window, wrk -c16 on URL) in N adjacent pairs beside the
# flood FLOODPID (running on entry and on return), which is paused
# (iso_pause) for the alone windows: alone then flooded in odd pairs,
# flooded then alone in even ones (A F | F A | A F | F A ...), so one
# pause or resume a pair. Each pair gives one ratio (flooded p99 ÷ alone
# p99), recorded under PAIR_SCEN with its two p99s. Sets P_ALONE and
# P_FLOOD (the windows' BENCH lines), P_RATIOS and P_QRATIOS (every pair's
# ratio; the quiet pairs'), P_UNSETTLED (pauses after which A was not yet
# idle), P_PAUSED_NS (how long the flood was stopped) and P_RESUMED (yes
# when the flood was paused at the end and has just been resumed).
pairs() {
  local who=$1 r=$2 fl=$3 n=$4 url=$5 s_alone=$6 s_flood=$7 s_pair=$8
  local k w b tp pair_a="" pair_f="" state=running
  P_ALONE="" P_FLOOD="" P_RATIOS=() P_QRATIOS=() P_UNSETTLED=0 P_PAUSED_NS=0 P_RESUMED=no
  for k in $(seq "$n"); do
    local order="alone flooded"
    [ $((k % 2)) = 0 ] && order="flooded alone"
    for w in $order; do
      if [ "$w" = alone ] && [ $state = running ]; then
        tp=$(date +%s%N); b=$(iso_pause "$who" "$fl"); state=paused
        P_UNSETTLED=$((P_UNSETTLED + (b > 0 ? 1 : 0)))
      elif [ "$w" = flooded ] && [ $state = paused ]; then
        P_PAUSED_NS=$((P_PAUSED_NS + $(date +%s%N) - tp)); iso_resume "$who" "$fl"; state=running
      fi
      if [ "$w" = alone ]; then pair_a=$(iso_window "$s_alone" "$who" "$r" "$url" -t1 -c16); P_ALONE+="$pair_a"$'\n'
      else pair_f=$(iso_window "$s_flood" "$who" "$r" "$url" -t1 -c16); P_FLOOD+="$pair_f"$'\n'; fi
    done
    if [ -n "$pair_a" ] && [ -n "$pair_f" ]; then
      local pr; pr=$(ratio "$(field p99_us "$pair_a")" "$(field p99_us "$pair_f")")
      P_RATIOS+=("$pr")
      rec "$s_pair" "$who" "$r" ratio "$pr"
      rec "$s_pair" "$who" "$r" p99_alone_ms "$(ms "$(field p99_us "$pair_a")")"
      rec "$s_pair" "$who" "$r" p99_flooded_ms "$(ms "$(field p99_us "$pair_f")")"
      if [ -n "$(quiet_lines "$pair_a")" ] && [ -n "$(quiet_lines "$pair_f")" ]; then P_QRATIOS+=("$pr"); fi
    fi
    pair_a="" pair_f=""
  done
  if [ $state = paused ]; then
    kill -CONT "$fl"; P_PAUSED_NS=$((P_PAUSED_NS + $(date +%s%N) - tp)); P_RESUMED=yes
  fi
  P_ALONE=${P_ALONE%$'\n'} P_FLOOD=${P_FLOOD%$'\n'}
}

# flood_start OUT CONNS PAIRS TIMEOUT URL: the flood of a row in pairs,
# wrk -cCONNS on URL writing OUT; FLOOD_PID is its pid. Its duration runs
# on through its pauses: 30 s a pair (a pair takes ~9-10 s) so that it
# never ends by itself inside the row; flood_stop ends it. Returns after
# 1 s, the flood's TLS handshakes: pairs starts with a pause, and every
# flooded window comes ISO_SETTLE or more after a resume.
flood_start() {
  taskset -c $LOAD_CPU "${A_CLASS[@]}" wrk -t1 -c"$2" -d$((60 + 30 * $3))s --timeout "$4" -s "$LUA" "$5" > "$1" 2>&1 &
  FLOOD_PID=$!
  PIDS+=($FLOOD_PID)
  sleep 1
}

# flood_stop PID: ends a flood_start flood; wrk prints its counts on
# SIGINT (its latencies span the pauses)
flood_stop() {
  kill -INT "$1" 2>/dev/null || true
  wait "$1" || true
  unpid "$1"
}

# iso_row_pairs WHO ROUND: one isolation row in pairs (see "The isolation
# scenarios" above and bench/README): the flood's wrk starts once, and
# pairs measures B beside it. At the end the flood's connections are
# closed and, in the first ISO_BARE_ROUNDS rounds, B measured once more
# alone, A with no connection at all: beside the last paused window
# (ISO_PAIRS even) it shows what A's idle connections cost.
iso_row_pairs() {
  local who=$1 r=$2 port; port=$(port_of $who)
  local url="https://b.test.acme.com:$port/api/x" t_start t_end
  t_start=$(date +%s%N)
  flood_start "$B/flood.out" 256 "$ISO_PAIRS" 60s "https://a.test.acme.com:$(flood_port_of $who)/api/x"
  pairs "$who" "$r" "$FLOOD_PID" "$ISO_PAIRS" "$url" iso_b_alone iso_b_flooded iso_pair
  local alone=$P_ALONE flood=$P_FLOOD paused_ns=$P_PAUSED_NS busy_left=$P_UNSETTLED
  local -a ratios=("${P_RATIOS[@]}") qratios=("${P_QRATIOS[@]}")
  # A's flood with B idle: the proxy's CPU for A's answers alone
  if [ "$ISO_A_WINDOW" != 0 ]; then
    [ $P_RESUMED = yes ] && sleep "$ISO_SETTLE"
    iso_a_alone "$who" "$r"
  fi
  flood_stop "$FLOOD_PID"
  t_end=$(date +%s%N)
  # (the next row starts with 1 s of its flood and a pause: by its first
  # window this row's A is idle, so there is no drain but before a bare window)
  local bare=""
  if [ "$r" -le "$ISO_BARE_ROUNDS" ]; then
    sleep "$ISO_DRAIN"
    bare=$(iso_window iso_b_bare "$who" "$r" "$url" -t1 -c16)
  fi
  # the two sets' figures (as before pairs), from the same windows
  iso_rec_windows "$who" "$r" "$alone" "$flood"
  [ ${#ratios[@]} -gt 0 ] && rec isolation "$who" "$r" p99_ratio_pairs "$(median_args "${ratios[@]}")"
  rec isolation "$who" "$r" pairs "${#ratios[@]}"
  [ ${#qratios[@]} -gt 0 ] && rec isolation "$who" "$r" p99_ratio_pairs_quiet "$(median_args "${qratios[@]}")"
  rec isolation "$who" "$r" quiet_pairs "${#qratios[@]}"
  # A: answers a second over the flood's running time (wrk's counts; its
  # latencies span the pauses and are not recorded), per flooded window
  # (A's state counters), and the pauses after which A was not yet idle
  local fline fnon run_s
  fline=$(grep '^BENCH' "$B/flood.out" || true)
  fnon=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$B/flood.out"); fnon=${fnon:-0}
  run_s=$(awk -v ns=$((t_end - t_start - paused_ns)) 'BEGIN{printf "%.3f", ns/1e9}')
  local a_rps a_non
  a_rps=$(awk -v n="$(field requests "$fline")" -v s="$run_s" 'BEGIN{printf "%.1f", (s>0)? n/s : 0}')
  a_non=$(awk -v n="$fnon" -v s="$run_s" 'BEGIN{printf "%.1f", (s>0)? n/s : 0}')
  rec iso_a_flood "$who" "$r" rps "$a_rps"
  rec iso_a_flood "$who" "$r" non2xx_per_s "$a_non"
  rec isolation "$who" "$r" a_rps "$a_rps"
  rec isolation "$who" "$r" a_non2xx_per_s "$a_non"
  rec isolation "$who" "$r" a_rps_window "$(median_of a_rps "$flood")"
  rec isolation "$who" "$r" a_rps_window_min "$(min_of a_rps "$flood")"
  rec isolation "$who" "$r" a_busy_flooded "$(median_of a_busy "$flood")"
  rec isolation "$who" "$r" a_busy_alone "$(max_of a_busy "$alone")"
  rec isolation "$who" "$r" a_unsettled "$busy_left"
  # B alone with A's 256 idle connections (the last pair's alone window,
  # ISO_PAIRS even) against B alone with none (after the flood's end)
  if [ -n "$bare" ] && [ $((ISO_PAIRS % 2)) = 0 ]; then
    local last; last=$(tail -1 <<<"$alone")
    rec isolation "$who" "$r" p99_bare_ms "$(ms "$(field p99_us "$bare")")"
    rec isolation "$who" "$r" idle_conns_ratio "$(ratio "$(field p99_us "$bare")" "$(field p99_us "$last")")"
  fi
}

# hung_rec WHO ROUND ALONE DURING: a hung row's figures from /ok's windows
# alone and during the flood (BENCH lines), and the flood's output
hung_rec() {
  local who=$1 r=$2 alone=$3 during=$4 hline hnon p_alone p_during req=0 bad l
  hline=$(grep '^BENCH' "$B/hung.out" || true)
  hnon=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$B/hung.out"); hnon=${hnon:-0}
  p_alone=$(median_of p99_us "$alone"); p_during=$(median_of p99_us "$during")
  while read -r l; do [ -n "$l" ] && req=$((req + $(field requests "$l"))); done <<<"$during"
  bad=$(sum_errors "$during")
  rec hung "$who" "$r" p99_alone_ms "$(ms "$p_alone")"
  rec hung "$who" "$r" p99_during_ms "$(ms "$p_during")"
  rec hung "$who" "$r" p99_ratio "$(ratio "$p_alone" "$p_during")"
  rec hung "$who" "$r" ok_success_pct "$(awk -v r="$req" -v b="$bad" 'BEGIN{printf "%.2f", (r+0>0)? 100*(r-b)/r : 0}')"
  rec hung "$who" "$r" ok_rps_alone "$(median_of rps "$alone")"
  rec hung "$who" "$r" ok_rps_during "$(median_of rps "$during")"
  rec hung "$who" "$r" hung_answers "$(field requests "$hline")"
  rec hung "$who" "$r" hung_non2xx "$hnon"
}

# hung_row_pairs WHO ROUND: one hung row in pairs, as the isolation
# scenario measures B: the flood on /hung starts once, and pairs measures
# /ok beside it, paused (until the proxy has no request of A's left: the
# hung ones end on the 5 s response timeout) and resumed.
hung_row_pairs() {
  local who=$1 r=$2 port; port=$(port_of $who)
  flood_start "$B/hung.out" "$HUNG_CLIENTS" "$HUNG_PAIRS" 10s "https://a.test.acme.com:$port/hung/x"
  pairs "$who" "$r" "$FLOOD_PID" "$HUNG_PAIRS" "https://a.test.acme.com:$port/ok/x" hung_ok_alone hung_ok_during hung_pair
  flood_stop "$FLOOD_PID"
  sleep "$ISO_DRAIN"
  hung_rec "$who" "$r" "$P_ALONE" "$P_FLOOD"
  [ ${#P_RATIOS[@]} -gt 0 ] && rec hung "$who" "$r" p99_ratio_pairs "$(median_args "${P_RATIOS[@]}")"
  rec hung "$who" "$r" pairs "${#P_RATIOS[@]}"
  # /hung's requests in the proxy at an alone window's start (the most of
  # them): 0 = every alone window had /hung idle (iso_pause waits for it)
  rec hung "$who" "$r" a_busy_alone "$(max_of a_busy "$P_ALONE")"
}

scen_hung() {
  if [ "$HUNG_PAIRS" -gt 0 ]; then
    log "hung: wrk -c$HUNG_CLIENTS on A's /hung (backend answers after 60 s; 5 s response timeout), paused and resumed; wrk -c16 measures A's /ok in $HUNG_PAIRS alone/during pairs a row"
  else
    log "hung: wrk -c$HUNG_CLIENTS on A's /hung (backend answers after 60 s; 5 s response timeout) while wrk -c16 measures A's /ok"
  fi
  start_all 1 $PROXY_CPU
  # A's requests are /hung's, ended by its 5 s response timeout; local:
  # the functions this one calls see these, and the defaults come back
  # when it returns
  local A_HBACKEND=hung A_WAIT=5
  for r in $(seq "$ROUNDS"); do
    for who in "${CONTENDERS[@]}"; do
      if [ "$HUNG_PAIRS" -gt 0 ]; then
        hung_row_pairs "$who" "$r"
      else
        local port; port=$(port_of $who)
        beside_flood "$who" "$r" "https://a.test.acme.com:$port/ok/x" hung_ok_alone hung_ok_during \
          "$B/hung.out" "https://a.test.acme.com:$port/hung/x" "$HUNG_CLIENTS" 10s
        hung_rec "$who" "$r" "$W_ALONE" "$W_DURING"
      fi
    done
  done
  stop_all
}

scen_openloop() {
  log "openloop: A offered $OPENLOOP_RATES req/s at a fixed rate (bench/openloop; A serves 160/s) while wrk -c16 measures B"
  start_all 1 $PROXY_CPU
  EDGED_A_NOW="$A_QUEUE/$A_REJECT"
  local whos=("${CONTENDERS[@]}")
  whos+=($(edged_rows))
  for r in $(seq "$ROUNDS"); do
    for rate in $OPENLOOP_RATES; do
      for who in "${whos[@]}"; do
        local port; port=$(port_of $who)
        edged_row_apply "$who"
        local row="$who@$rate" alone ramp during after ol oline held="" url="https://b.test.acme.com:$port/api/x"
        alone=$(windows 2 openloop_b_alone "$row" "$r" "$url" -t1 -c16)
        local secs=$((ISO_WARMUP + LOADED + 1))
        taskset -c $LOAD_CPU "$B/openloop" -url "https://a.test.acme.com:$port/api/x" -rate "$rate" -duration ${secs}s \
          -conns 4096 -timeout 5s -ca "$CA" > "$B/openloop.out" 2>&1 &
        ol=$!
        # B during the flood's first ISO_WARMUP seconds: the ramp, while the
        # generator opens its connections (see bench/README).
        ramp=$(DURATION=$ISO_WARMUP measure_wrk openloop_b_ramp "$row" "$r" "$url" -t1 -c16)
        case $who in
          edged*) ( sleep $(( (LOADED + 1) / 2 )); curl -s "http://127.0.0.1:$E_ADMIN/metrics" | awk '/^edged_environment_requests_held\{env="a"/{print $2}' > "$B/held.$$" ) & held=$!;;
        esac
        during=$(windows "$ISO_WINDOWS" openloop_b_during "$row" "$r" "$url" -t1 -c16)
        wait $ol || true
        if [ -n "$held" ]; then wait $held || true; rec openloop "$row" "$r" a_held "$(cat "$B/held.$$")"; fi
        sleep $ISO_DRAIN
        after=$(windows 2 openloop_b_alone "$row" "$r" "$url" -t1 -c16)
        alone+=$'\n'"$after"
        oline=$(grep '^BENCH' "$B/openloop.out" || true)
        [ -n "$oline" ] || echo "run.sh: openloop failed: $(cat "$B/openloop.out")" >&2
        local p_alone p_during p_ramp
        p_alone=$(median_of p99_us "$alone"); p_during=$(median_of p99_us "$during"); p_ramp=$(field p99_us "$ramp")
        rec openloop "$row" "$r" p99_alone_ms "$(ms "$p_alone")"
        rec openloop "$row" "$r" p99_ramp_ms "$(ms "$p_ramp")"
        rec openloop "$row" "$r" p99_ramp_ratio "$(ratio "$p_alone" "$p_ramp")"
        rec openloop "$row" "$r" p99_loaded_ms "$(ms "$p_during")"
        rec openloop "$row" "$r" p99_ratio "$(ratio "$p_alone" "$p_during")"
        rec openloop "$row" "$r" b_errors "$(sum_errors "$during")"
        rec openloop "$row" "$r" a_started_per_s "$(field rate "$oline")"
        rec openloop "$row" "$r" a_ok_per_s "$(awk -v n="$(field ok "$oline")" -v s=$secs 'BEGIN{printf "%.1f", n/s}')"
        rec openloop "$row" "$r" a_503_per_s "$(awk -v n="$(field s503 "$oline")" -v s=$secs 'BEGIN{printf "%.1f", n/s}')"
        rec openloop "$row" "$r" a_errors "$(( $(field errors "$oline") + $(field other "$oline") ))"
        rec openloop "$row" "$r" a_missed "$(field missed "$oline")"
        rec openloop "$row" "$r" a_p99_ms "$(awk -v v="$(field p99_us "$oline")" 'BEGIN{printf "%.1f", v/1000}')"
      done
    done
  done
  stop_all
}

# set_edged_a QUEUE REJECT: rewrite edged's environment A with queue = QUEUE
# and reject_delay = REJECT ("default": left out), and wait until the
# running edged applied it (its generation moved).
set_edged_a() { # set_edged_a QUEUE REJECT [B]: B = the EDGED_B instance
  local gen0 gen i d="$B/edged" admin=$E_ADMIN
  [ "${3:-}" = B ] && { d="$B/edgedB"; admin=$((PB + 13)); }
  gen0=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^edged_config_generation /{print $2}')
  edged_a_toml "$d/conf.d/.a.toml.tmp" 0 "$1" "$2"
  mv "$d/conf.d/.a.toml.tmp" "$d/conf.d/a.toml"
  for i in $(seq 100); do
    gen=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^edged_config_generation /{print $2}')
    [ "$gen" != "$gen0" ] && return 0
    sleep 0.05
  done
  echo "run.sh: edged did not apply A's queue = $1, reject_delay = $2" >&2
  return 1
}

reload_once() { # reload_once CONTENDER N: change environment A and tell the contender
  local who=$1 n=$2
  case $who in
    edged)
      edged_a_toml "$B/edged/conf.d/.a.toml.tmp" "$n" "$A_QUEUE" "$A_REJECT"
      mv "$B/edged/conf.d/.a.toml.tmp" "$B/edged/conf.d/a.toml";;
    nginx)
      printf 'location /gen-%d/ { proxy_pass http://slow; }\n' "$n" > "$B/nginx/a-reload.conf"
      kill -HUP "$NGINX_PID";;
    haproxy)
      subst "$TPL/haproxy-a.cfg" "$B/haproxy/haproxy-a.cfg" SLOW=$SLOW GEN=$n
      kill -USR2 "$HAPROXY_PID";;
  esac
}

scen_reload() {
  local n_reloads=$(( RELOAD_SECONDS * 5 ))
  log "reload: wrk -t1 -c64 on B for ${RELOAD_SECONDS}s while A changes every 200 ms ($n_reloads times)"
  start_all 1 $PROXY_CPU
  local r
  for r in $(seq "$ROUNDS"); do
  for who in "${CONTENDERS[@]}"; do
    local port; port=$(port_of $who)
    measure_wrk reload_baseline "$who" "$r" "https://b.test.acme.com:$port/api/x" -t1 -c64 >/dev/null
    local gen0=""
    [ $who = edged ] && gen0=$(curl -s "http://127.0.0.1:$E_ADMIN/metrics" | awk '/^edged_config_generation /{print $2}')
    local out="$B/reload.$who.$r.out"
    taskset -c $LOAD_CPU wrk -t1 -c64 -d${RELOAD_SECONDS}s --timeout 5s --latency -s "$LUA" "https://b.test.acme.com:$port/api/x" > "$out" 2>&1 &
    local w=$!
    sleep 0.5
    local i
    for i in $(seq "$n_reloads"); do
      reload_once "$who" "$i"
      sleep 0.2
      kill -0 $w 2>/dev/null || break
    done
    wait $w || true
    sleep 1
    local line; line=$(grep '^BENCH' "$out")
    local non; non=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$out"); non=${non:-0}
    local errs=$(( $(field err_connect "$line") + $(field err_read "$line") + $(field err_write "$line") + $(field err_timeout "$line") ))
    rec reload "$who" "$r" reloads_sent "$i"
    rec reload "$who" "$r" requests "$(field requests "$line")"
    rec reload "$who" "$r" socket_errors "$errs"
    rec reload "$who" "$r" non2xx "$non"
    rec reload "$who" "$r" lost_pct "$(awk -v e="$errs" -v n="$non" -v r="$(field requests "$line")" 'BEGIN{printf "%.3f", (r>0)? 100*(e+n)/(r+e) : 0}')"
    rec reload "$who" "$r" p99_ms "$(awk -v v="$(field p99_us "$line")" 'BEGIN{printf "%.3f", v/1000}')"
    rec reload "$who" "$r" p999_ms "$(awk -v v="$(field p999_us "$line")" 'BEGIN{printf "%.3f", v/1000}')"
    rec reload "$who" "$r" rps "$(field rps "$line")"
    case $who in
      edged)
        local gen1; gen1=$(curl -s "http://127.0.0.1:$E_ADMIN/metrics" | awk '/^edged_config_generation /{print $2}')
        rec reload edged "$r" reloads_applied "$(( ${gen1%.*} - ${gen0%.*} ))"
        rec reload edged "$r" procs_after 1;;
      nginx)   rec reload nginx "$r" procs_after "$(procs "$NGINX_PID" | wc -l)";;
      haproxy) rec reload haproxy "$r" procs_after "$(procs "$HAPROXY_PID" | wc -l)";;
    esac
    [ $who = edged ] && { kill -0 "$EDGED_PID" || { echo "run.sh: edged died during reload" >&2; }; }
  done
  done
  stop_all
}

scen_reloadcost() {
  log "reloadcost: edged reload time/CPU/RSS for sizes $RC_SIZES"
  local size
  for size in $RC_SIZES; do
    local np=${size%%:*} ne=${size##*:}
    local tag="${np}p_${ne}e"
    local d="$B/rc/$tag"
    rm -rf "$d"; mkdir -p "$d/state"
    local rcargs=(-dir "$d/conf.d" -envs "$ne" -proxies "$np" -backend "http://127.0.0.1:$FAST" -cert "$CERT" -key "$KEY"
                  -https 127.0.0.1:$RC_PORT -admin 127.0.0.1:$RC_ADMIN -state "$d/state")
    "$B/reloadcost" gen "${rcargs[@]}"
    local t_start t_ready
    t_start=$(date +%s%N)
    GOMAXPROCS=1 taskset -c $PROXY_CPU "$EDGED" serve -c "$d/conf.d" >>"$d/edged.log" 2>&1 & local pid=$!
    PIDS+=($pid)
    wait_http "http://127.0.0.1:$RC_ADMIN/readyz"
    t_ready=$(date +%s%N)
    rec reloadcost "$tag" 1 startup_ms "$(( (t_ready - t_start) / 1000000 ))"
    sleep 1
    rec reloadcost "$tag" 1 rss_idle_mib "$(awk -v k="$(rss_kib $pid)" 'BEGIN{printf "%.1f", k/1024}')"
    local mode r
    for mode in one all; do
      for r in $(seq "$ROUNDS"); do
        local c0 c1 ms rss0
        rss0=$(rss_kib $pid)
        c0=$(cpu_ticks $pid)
        ms=$("$B/reloadcost" change "${rcargs[@]}" -ca "$CA" -mode $mode -round "$mode$r" -timeout 60s) || { ms=""; echo "run.sh: reload ($tag $mode) did not serve" >&2; }
        sleep 0.3
        c1=$(cpu_ticks $pid)
        rec reloadcost "$tag" "$r" "${mode}_ms" "$ms"
        rec reloadcost "$tag" "$r" "${mode}_cpu_ms" "$(( (c1 - c0) * 1000 / HZ ))"
        rec reloadcost "$tag" "$r" "${mode}_rss_after_mib" "$(awk -v k="$(rss_kib $pid)" 'BEGIN{printf "%.1f", k/1024}')"
      done
    done
    rec reloadcost "$tag" 1 hwm_mib "$(awk -v k="$(hwm_kib $pid)" 'BEGIN{printf "%.1f", k/1024}')"
    # under load: one proxy of the first environment
    local t0 t1 out line
    ( sleep $(( (DURATION + 1) / 2 )); rss_kib $pid > "$B/rss.$$" ) & local sampler=$!
    t0=$(cpu_ticks $pid)
    out=$(taskset -c $LOAD_CPU wrk -t1 -c64 -d${DURATION}s --latency -s "$LUA" "https://g0.test.acme.com:$RC_PORT/e0/p0/x" 2>&1 </dev/null) || true
    wait $sampler || true
    t1=$(cpu_ticks $pid)
    line=$(grep '^BENCH' <<<"$out" || true)
    rec reloadcost "$tag" 1 rss_load_mib "$(awk -v k="$(cat "$B/rss.$$")" 'BEGIN{printf "%.1f", k/1024}')"
    rec reloadcost "$tag" 1 load_rps "$(field rps "$line")"
    rec reloadcost "$tag" 1 load_cpu_us_per_req "$(us_per $((t1 - t0)) "$(field requests "$line")")"
    stop_pid $pid
  done
}

# g0.test.acme.com etc. must resolve for wrk in reloadcost
if [[ " $SCENARIOS " == *" reloadcost "* ]]; then
  getent hosts g0.test.acme.com | grep -q '^127\.0\.0\.1' || { echo "run.sh: g0.test.acme.com does not resolve: run bench/setup.sh" >&2; exit 1; }
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STEAL0=$(awk '/^cpu /{print $9}' /proc/stat)
T0=$(date +%s)
for s in $SCENARIOS; do
  B_ON=
  [ -n "$EDGED_B" ] && [[ " $EDGED_B_SCENARIOS " == *" $s "* ]] && B_ON=1
  case $s in
    direct) scen_direct;;
    h1) scen_h1 h1 1 $PROXY_CPU;;
    h1w2) scen_h1 h1w2 2 "$PROXY_CPU,$LOAD_CPU";;
    h2) scen_h2;;
    newconn) scen_newconn;;
    isolation) scen_isolation;;
    hung) scen_hung;;
    openloop) scen_openloop;;
    reload) scen_reload;;
    reloadcost) scen_reloadcost;;
    *) echo "run.sh: unknown scenario $s" >&2; exit 2;;
  esac
done
T1=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
STEAL1=$(awk '/^cpu /{print $9}' /proc/stat)
# Other people's busy processes during the run would skew the figures: list them.
OTHERS=$(ps -eo pid,pcpu,etime,comm --sort=-pcpu --no-headers | awk -v ours=" ${PIDS[*]} " 'index(ours, " " $1 " ") == 0 && $2 > 2.0 {print $4 "(pid " $1 ", " $2 "% over " $3 ")"}' | head -5 | tr '\n' ' ')

{
  echo "# edged vs nginx vs HAProxy — $STAMP"
  echo
  echo "Machine: $(nproc) CPUs, $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), kernel $(uname -r)."
  echo "Versions: edged $("$EDGED" version | awk '{print $2}')${EDGED_B:+ (edgedB: $("$EDGED_B" version | awk '{print $2}'))} (checkout $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')), $(nginx -v 2>&1 | sed 's/nginx version: //'), HAProxy $(haproxy -v | head -1 | awk '{print $3}'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(h2load --version | head -1)."
  echo "Load average before/after: $LOAD_BEFORE / $LOAD_AFTER; other processes over 2% CPU at the end: ${OTHERS:-none}."
  echo "CPU time stolen by the hypervisor during the run: $(awk -v t=$((STEAL1 - STEAL0)) -v hz=$HZ -v w=$((T1 - T0)) 'BEGIN{printf "%.1f s over %d s of wall time (%.1f%% of 2 CPUs)", t/hz, w, (w>0)? 100*t/hz/(2*w) : 0}') — absolute figures on this VM move by up to ~30% between runs; compare contenders within one run (they are interleaved)."
  echo "ROUNDS=$ROUNDS DURATION=${DURATION}s SCENARIOS=\"$SCENARIOS\" A_QUEUE=$A_QUEUE A_QUEUE_BIG=$A_QUEUE_BIG A_REJECT=$A_REJECT A_REJECT_OLD=$A_REJECT_OLD OPENLOOP_RATES=\"$OPENLOOP_RATES\" HUNG_CLIENTS=$HUNG_CLIENTS ISO_WARMUP=$ISO_WARMUP ISO_WINDOW=$ISO_WINDOW ISO_WINDOWS=$ISO_WINDOWS ISO_PAIRS=$ISO_PAIRS ISO_SETTLE=$ISO_SETTLE ISO_BARE_ROUNDS=$ISO_BARE_ROUNDS ISO_SPLIT=$ISO_SPLIT ISO_A_CLASS=$ISO_A_CLASS ISO_A_WINDOW=$ISO_A_WINDOW ISO_B_PACE=$ISO_B_PACE H1_ROUNDS=$H1_ROUNDS PROMETHEUS=$PROMETHEUS SAME_HEADERS=$SAME_HEADERS BACKEND=$BACKEND BACKEND_CPU=$BACKEND_CPU SLOW_SPREAD=$SLOW_SPREAD${EDGED_B:+ EDGED_B=$EDGED_B PROMETHEUS_B=${PROMETHEUS_B:-$PROMETHEUS} EDGED_B_SCENARIOS=\"$EDGED_B_SCENARIOS\"}; wall time $((T1 - T0)) s. Raw data: \`$(basename "$CSV")\`."
  echo
  go run ./bench/report -csv "$CSV"
} > "$MD"
log "wrote $MD and $CSV"
