#!/usr/bin/env bash
# The example cluster on one machine: two simulated Asterisks (ami-sim), three amiproxy
# replicas with the same configuration (replica.toml), HAProxy in front (haproxy.cfg).
#
#   examples/cluster/run.sh            start, print the addresses, run until Ctrl-C
#   examples/cluster/run.sh --smoke    start, log in through HAProxy, run one action, stop
#
# AMI_PORT (5038) and BASE_PORT (15100) move the ports; BIN_DIR skips the release build.
#
# Needs Debian's haproxy (apt-get install haproxy). A replica that exits is started again
# (as systemd's Restart=always would), so a rolling restart is `kill -TERM <pid>` of one
# replica at a time: its /health turns 503, HAProxy stops sending it clients, it answers
# what it holds and closes its clients, who log in again through HAProxy to the others.
set -euo pipefail
cd "$(dirname "$0")/../.."

AMI_PORT=${AMI_PORT:-5038}     # HAProxy's front: point AMI clients here
BASE=${BASE_PORT:-15100}       # replicas on BASE+1..3, their health on BASE+11..13,
                               # the simulated Asterisks on BASE+21..22
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1

for bin in haproxy; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || {
    echo "$bin is not installed: apt-get install $bin" >&2; exit 1; }
done
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

# BIN_DIR: where amiproxy and ami-sim are already built (the tests use their own build).
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release -q -p amiproxy -p ami-sim
  BIN_DIR=${CARGO_TARGET_DIR:-target}/release
fi
BIN=$BIN_DIR

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/amiproxy-cluster.XXXXXX")
export RUN_DIR
declare -A PID
cleanup() {
  trap - EXIT INT TERM
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, its output in $RUN_DIR/NAME.log.
start() {
  local name=$1; shift
  "$@" >>"$RUN_DIR/$name.log" 2>&1 &
  PID[$name]=$!
}

# wait_port PORT NAME: polls until PORT accepts a connection (10 s at most).
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "${PID[$2]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$2 did not start; its log:" >&2; cat "$RUN_DIR/$2.log" >&2; exit 1
}

start_replica() {
  local n=$1
  sed -e "s/@REPLICA@/r$n/" -e "s/@PORT@/$((BASE + n))/" -e "s/@HEALTH@/$((BASE + 10 + n))/" \
      -e "s/@PBX1@/$((BASE + 21))/" -e "s/@PBX2@/$((BASE + 22))/" \
      examples/cluster/replica.toml >"$RUN_DIR/r$n.toml"
  start "r$n" "$BIN/amiproxy" --config "$RUN_DIR/r$n.toml"
}

start pbx1 "$BIN/ami-sim" --name pbx1 --system-name pbx1 --listen "127.0.0.1:$((BASE + 21))" --calls-per-sec 0.5
start pbx2 "$BIN/ami-sim" --name pbx2 --system-name pbx2 --listen "127.0.0.1:$((BASE + 22))" \
  --calls-per-sec 0.5 --channel-id-base 4096
wait_port $((BASE + 21)) pbx1
wait_port $((BASE + 22)) pbx2
for n in 1 2 3; do start_replica "$n"; done
for n in 1 2 3; do wait_port $((BASE + 10 + n)) "r$n"; done

export AMI_BIND="127.0.0.1:$AMI_PORT"
for n in 1 2 3; do
  export "R${n}_PORT=$((BASE + n))" "R${n}_HEALTH=$((BASE + 10 + n))"
done
"$HAPROXY" -c -q -f examples/cluster/haproxy.cfg
start haproxy "$HAPROXY" -db -f examples/cluster/haproxy.cfg
wait_port "$AMI_PORT" haproxy

if [ "$SMOKE" = 1 ]; then
  exec 3<>"/dev/tcp/127.0.0.1/$AMI_PORT"
  printf 'Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: 1\r\n\r\nAction: CoreSettings\r\nActionID: 2\r\n\r\nAction: Logoff\r\nActionID: 3\r\n\r\n' >&3
  reply=$(timeout 10 cat <&3 || true)
  exec 3<&-
  echo "$reply" | tr -d "\r"
  if echo "$reply" | grep -q "Authentication accepted" && echo "$reply" | grep -q "AsteriskVersion"; then
    echo "smoke: logged in through HAProxy and answered by an upstream"; exit 0
  fi
  echo "smoke: FAILED; logs in $RUN_DIR" >&2; exit 1
fi

cat <<INFO
Cluster up (logs in $RUN_DIR):
  AMI through HAProxy   127.0.0.1:$AMI_PORT   (admin/admin-secret, wallboard/wallboard-secret)
  replicas r1 r2 r3     127.0.0.1:$((BASE + 1))..$((BASE + 3)) (HAProxy's only: they expect its PROXY
                        protocol header), health and metrics on :$((BASE + 11))..$((BASE + 13))
  upstreams pbx1 pbx2   127.0.0.1:$((BASE + 21)), :$((BASE + 22)) (simulated Asterisks)
  HAProxy admin socket  $RUN_DIR/haproxy.sock  (echo "show stat" | socat - UNIX:...)
Rolling restart: kill -TERM <pid> of one replica at a time; it is started again.
INFO
for n in 1 2 3; do echo "  r$n pid ${PID[r$n]}"; done
echo "Ctrl-C stops everything."

# Supervise: a replica that exits (SIGTERM for a rolling restart, a crash) is started again.
while true; do
  for n in 1 2 3; do
    if ! kill -0 "${PID[r$n]}" 2>/dev/null; then
      wait "${PID[r$n]}" 2>/dev/null || true
      echo "r$n exited; starting it again"
      start_replica "$n"
      echo "  r$n pid ${PID[r$n]}"
    fi
  done
  kill -0 "${PID[haproxy]}" 2>/dev/null || { echo "haproxy exited; see $RUN_DIR/haproxy.log" >&2; exit 1; }
  sleep 1
done
