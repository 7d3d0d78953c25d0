#!/usr/bin/env bash
# Orchard on this one machine in one command: a hub and a local agent on this machine's Docker
# Engine, running manifests/examples/hello.yaml.
#
#   bash scripts/quickstart.sh          start (or restart cleanly: stops a previous run first)
#   bash scripts/quickstart.sh stop     delete the hello deployment, then stop the agent and hub
#   bash scripts/quickstart.sh status   show the recorded processes, nodes and pods
#   bash scripts/quickstart.sh reset    stop, then delete the quickstart state directory
#
# Needs root on a fresh Debian 12 (it installs docker.io and busybox-static and starts dockerd);
# Node 20 and npm must be there. State, pids and logs live in $ORCHARD_STATE, by default
# /var/lib/orchard-quickstart, or ./.orchard-data when that is not writable. The hub listens on
# $ORCHARD_HTTP_PORT (HTTPS API, default 8443) and $ORCHARD_MQTT_PORT (MQTTS, default 8883), and
# writes ~/.orchard/config (or $ORCHARD_CONFIG) so the CLI finds it.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ORCHARD_ROOT"

HTTP_PORT="${ORCHARD_HTTP_PORT:-8443}"
MQTT_PORT="${ORCHARD_MQTT_PORT:-8883}"
HUB_URL="https://127.0.0.1:$HTTP_PORT"
MANIFEST="manifests/examples/hello.yaml"
DEPLOYMENT="hello"
# The port manifests/examples/hello.yaml's Service publishes on this machine.
SERVICE_PORT=30080
POD_TIMEOUT="${ORCHARD_QUICKSTART_TIMEOUT:-120}"
CLI="$ORCHARD_ROOT/dist/cli/main.js"

pick_state_dir() {
  if [[ -n "${ORCHARD_STATE:-}" ]]; then
    STATE="$ORCHARD_STATE"
  elif mkdir -p /var/lib/orchard-quickstart 2>/dev/null && [[ -w /var/lib/orchard-quickstart ]]; then
    STATE=/var/lib/orchard-quickstart
  else
    STATE="$ORCHARD_ROOT/.orchard-data"
  fi
  mkdir -p "$STATE"
  # Tokens, keys and logs live here: private to this user.
  chmod 0700 "$STATE"
  STATE="$(cd "$STATE" && pwd)"
}

orchard() { node "$CLI" "$@"; }

# The node name: the hostname's first label as a DNS-1123 label (lowercase, [a-z0-9-], at most 63 chars).
node_name() {
  local n
  n="$(hostname 2>/dev/null || cat /etc/hostname 2>/dev/null || true)"
  n="${n%%.*}" # the first DNS label, as the agent's own default does
  n="$(printf '%s' "$n" | LC_ALL=C tr '[:upper:]' '[:lower:]' | LC_ALL=C tr -c 'a-z0-9-' '-' | sed -E 's/-+/-/g; s/^-+//' | cut -c1-63 | sed -E 's/-+$//')"
  printf '%s\n' "${n:-orchard-node}"
}

# The pid recorded in $STATE/NAME.pid, when that process is still our node process.
recorded_pid() {
  local f="$STATE/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  pid_is_ours "$pid" "$CLI" || return 1
  printf '%s\n' "$pid"
}

# "running total" for the hello pods. Asks for `get pods -o json` and falls back to the plain
# `get pods` table (NAME ... STATUS ..., one pod per line) if the CLI rejects -o or prints text.
hello_pods() {
  local out
  out="$(timeout 20 node "$CLI" get pods -o json 2>/dev/null)" || out="$(timeout 20 node "$CLI" get pods 2>/dev/null)" || {
    echo "? ?"
    return 0
  }
  # shellcheck disable=SC2016 # JavaScript, not shell
  printf '%s' "$out" | node -e '
    let s = "";
    process.stdin.on("data", (c) => (s += c)).on("end", () => {
      let running = 0, total = 0;
      try {
        const v = JSON.parse(s);
        const items = Array.isArray(v) ? v : Array.isArray(v?.items) ? v.items : [];
        for (const p of items) {
          if (p?.metadata?.labels?.app !== "hello" && !String(p?.metadata?.name ?? "").startsWith("hello-")) continue;
          total++;
          if (p?.status?.phase === "Running") running++;
        }
      } catch {
        for (const line of s.split("\n").slice(1)) {
          const cols = line.trim().split(/\s+/);
          if (!cols[0]?.startsWith("hello-")) continue;
          total++;
          if (cols.includes("Running")) running++;
        }
      }
      console.log(`${running} ${total}`);
    });'
}

wanted_replicas() { sed -nE 's/^  replicas:[[:space:]]*([0-9]+).*/\1/p' "$MANIFEST" | head -n 1; }

# Containers the agent runs for the hello deployment on this node (labels set by the agent).
hello_containers() {
  docker ps -q "$@" --filter "label=orchard.deployment=$DEPLOYMENT" --filter "label=orchard.node=$(node_name)" 2>/dev/null || true
}

do_stop() {
  local hub agent i
  hub="$(recorded_pid hub || true)"
  agent="$(recorded_pid agent || true)"
  if [[ -n "$hub" && -f "$CLI" ]]; then
    # Delete first, while hub and agent are up: the agent keeps its workloads running when it
    # stops (partition is not death), so stopping it first would leave the containers behind.
    log "deleting deployment and service $DEPLOYMENT"
    timeout 20 node "$CLI" delete service "$DEPLOYMENT" >/dev/null 2>&1 || true
    if timeout 20 node "$CLI" delete deployment "$DEPLOYMENT" >/dev/null 2>&1; then
      if [[ -n "$agent" ]] && docker_ok; then
        # The pods vanish from the hub at once; the containers go when the agent has stopped
        # them (the pod's grace period, then SIGKILL).
        for ((i = 0; i < 45; i++)); do
          [[ -z "$(hello_containers)" ]] && break
          sleep 1
        done
      fi
    else
      warn "could not delete deployment $DEPLOYMENT (already gone, or the hub is not answering)"
    fi
  fi
  if [[ -n "$agent" ]]; then log "stopping agent (pid $agent)"; stop_pid "$agent" 15; fi
  if [[ -n "$hub" ]]; then log "stopping hub (pid $hub)"; stop_pid "$hub" 15; fi
  # A stopped agent leaves its service addresses on lo (its pods keep their name server); with
  # the quickstart's pods gone, take the default range's addresses away too.
  local addr
  while read -r addr; do
    [[ -n "$addr" ]] && ip addr del "$addr/32" dev lo 2>/dev/null || true
  done < <(ip -4 -o addr show dev lo 2>/dev/null | grep -oE 'inet 10\.250\.[0-3]\.[0-9]+/32' | cut -d' ' -f2 | cut -d/ -f1)
  rm -f "$STATE/hub.pid" "$STATE/agent.pid"
  # Stopped hello containers the agent had no time to remove.
  local left
  left="$(hello_containers -a --filter status=exited --filter status=created)"
  # shellcheck disable=SC2086 # one id per word
  [[ -z "$left" ]] || docker rm $left >/dev/null 2>&1 || true
}

# start_bg NAME ARGS... — run the orchard CLI in the background, logging to $STATE/NAME.log.
start_bg() {
  local name="$1"
  shift
  # Logs are private (0600, also when an older run left a 0644 one); the hub prints no admin
  # token into it (stdout is not a terminal) and the agent gets its join token from a file.
  (umask 077 && touch "$STATE/$name.log")
  chmod 0600 "$STATE/$name.log"
  echo "---- $(date -u +%FT%TZ) orchard $* " | sed -E 's/(--token )[^ ]+/\1<redacted>/' >>"$STATE/$name.log"
  nohup node "$CLI" "$@" >>"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
}

# check_alive NAME — die with the tail of NAME's log when its recorded process is gone.
check_alive() {
  recorded_pid "$1" >/dev/null && return 0
  tail -n 30 "$STATE/$1.log" >&2 || true
  die "the $1 exited; its log is $STATE/$1.log"
}

do_start() {
  ensure_node_deps
  ensure_docker
  ensure_test_image
  log "building (npm run build)"
  npm run --silent build || die "build failed"
  [[ -f "$CLI" ]] || die "$CLI not found after the build"

  do_stop
  if http_ok "$HUB_URL/healthz"; then
    die "something else already answers on $HUB_URL (another hub?); stop it first"
  fi
  mkdir -p "$STATE/hub" "$STATE/agent"

  log "starting hub (data: $STATE/hub, log: $STATE/hub.log)"
  start_bg hub hub --data-dir "$STATE/hub" --http-port "$HTTP_PORT" --mqtt-port "$MQTT_PORT"
  local i
  for ((i = 0; i < 60; i++)); do
    http_ok "$HUB_URL/healthz" && break
    check_alive hub
    sleep 1
  done
  http_ok "$HUB_URL/healthz" || die "hub not healthy after 60s; see $STATE/hub.log"
  # The hub writes admin.token and the CLI config right after it starts listening.
  for ((i = 0; i < 10; i++)); do
    [[ -s "$STATE/hub/admin.token" ]] && break
    sleep 1
  done
  [[ -s "$STATE/hub/admin.token" ]] || die "the hub wrote no $STATE/hub/admin.token; see $STATE/hub.log"
  log "hub is up at $HUB_URL"

  local token out
  out="$(orchard token create --ttl 1h 2>&1)" || {
    printf '%s\n' "$out" >&2
    die "could not create a join token"
  }
  token="$(grep -oE 'K10[0-9a-f]{64}::[a-z0-9]{6,32}\.[A-Za-z0-9_-]{16,128}' <<<"$out" | head -n 1 || true)"
  [[ -n "$token" ]] || die "no join token in the output of 'orchard token create': $out"

  local name
  name="$(node_name)"
  log "starting agent '$name' (data: $STATE/agent, log: $STATE/agent.log)"
  # The join token goes in a 0600 file, not on the agent's command line (ps shows that to everyone).
  (umask 077 && printf '%s\n' "$token" >"$STATE/join.token")
  start_bg agent agent --hub "127.0.0.1:$HTTP_PORT" --token-file "$STATE/join.token" --name "$name" --data-dir "$STATE/agent"

  log "applying $MANIFEST"
  orchard apply -f "$MANIFEST" || die "apply failed"

  local want running=0 total=0
  want="$(wanted_replicas)"
  want="${want:-1}"
  log "waiting up to ${POD_TIMEOUT}s for $want $DEPLOYMENT pod(s) to be Running"
  for ((i = 0; i < POD_TIMEOUT; i += 2)); do
    check_alive hub
    check_alive agent
    read -r running total < <(hello_pods)
    if [[ "$running" =~ ^[0-9]+$ && "$running" -ge "$want" && "$running" == "$total" ]]; then break; fi
    sleep 2
  done

  # The hello Service publishes port 30080 on this machine: the agent's proxy answers it once a pod is Ready.
  local served=no
  if [[ "$running" =~ ^[0-9]+$ && "$running" -ge "$want" ]]; then
    log "waiting up to 30s for the $DEPLOYMENT service on http://127.0.0.1:$SERVICE_PORT/"
    for ((i = 0; i < 30; i++)); do
      if http_ok "http://127.0.0.1:$SERVICE_PORT/"; then
        served=yes
        break
      fi
      sleep 1
    done
  fi

  echo
  orchard get nodes || true
  echo
  orchard get pods || true
  echo
  orchard get services || true
  echo
  if ! [[ "$running" =~ ^[0-9]+$ && "$running" -ge "$want" && "$running" == "$total" ]]; then
    warn "pods not all Running after ${POD_TIMEOUT}s ($running of $total Running, want $want)"
    echo "Look at: $STATE/hub.log and $STATE/agent.log, or: node dist/cli/main.js describe pod <name>" >&2
    exit 1
  fi
  if [[ $served != yes ]]; then
    warn "the $DEPLOYMENT service did not answer on http://127.0.0.1:$SERVICE_PORT/ within 30s"
    echo "Look at: $STATE/agent.log, or: node dist/cli/main.js describe service $DEPLOYMENT" >&2
    exit 1
  fi
  cat <<EOF
Orchard is running on this machine: $running $DEPLOYMENT pods Running, and the $DEPLOYMENT
service answers on http://127.0.0.1:$SERVICE_PORT/ (inside any pod: http://$DEPLOYMENT/).

  hub:    $HUB_URL      (pid $(cat "$STATE/hub.pid"), log $STATE/hub.log)
  agent:  node '$name'  (pid $(cat "$STATE/agent.pid"), log $STATE/agent.log)
  admin token: $STATE/hub/admin.token   CLI config: ${ORCHARD_CONFIG:-~/.orchard/config}

Try:   node dist/cli/main.js get pods
       node dist/cli/main.js apply -f manifests/examples/web-hostport.yaml
Stop:  bash scripts/quickstart.sh stop
EOF
}

do_status() {
  local hub agent
  hub="$(recorded_pid hub || true)"
  agent="$(recorded_pid agent || true)"
  echo "state: $STATE"
  echo "hub:   ${hub:-not running}"
  echo "agent: ${agent:-not running}"
  if [[ -n "$hub" ]]; then
    orchard get nodes || true
    orchard get pods || true
  fi
}

pick_state_dir
case "${1:-start}" in
  start) do_start ;;
  stop) do_stop && log "stopped (state kept in $STATE)" ;;
  status) do_status ;;
  reset)
    do_stop
    rm -rf "$STATE"
    log "removed $STATE (~/.orchard/config is left alone)"
    ;;
  -h | --help | help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "usage: bash scripts/quickstart.sh [start|stop|status|reset]" ;;
esac
