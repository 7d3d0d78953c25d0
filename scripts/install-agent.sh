#!/usr/bin/env bash
# Installs the Orchard agent on a device as a systemd service, from this checkout.
#
#   sudo bash scripts/install-agent.sh --hub HUB:8443 --token-file FILE [--name NAME] [--labels k=v,…]
#   sudo ORCHARD_TOKEN='K10…::…' bash scripts/install-agent.sh --hub HUB:8443 …
#
# It installs npm dependencies and builds dist/ if needed, copies the join token to
# /etc/orchard/join.token (0600, in a 0700 dir; the unit passes it as --token-file, so it never
# shows in `ps` nor in the environment of processes the agent starts), writes
# /etc/systemd/system/orchard-agent.service and enables it. The agent keeps its identity and
# desired-set cache in /var/lib/orchard-agent; after the first join the token is not needed
# (/etc/orchard/join.token may be deleted: the agent then starts from its saved identity). The
# token is removed from the environment first, so no npm script or other program sees it.
#
# Options: --token-file FILE (or env ORCHARD_TOKEN; --token TOKEN still works but shows in `ps`
#          while this script runs), --name (default: this hostname, lowercased), --labels
#          (device-reported: the hub files zone=north as node.orchard.dev/zone=north; authoritative
#          labels come from the join token), --data-dir, --extra "ARGS", --no-start (write files only).
#          Env: ORCHARD_ETC_DIR, ORCHARD_SYSTEMD_DIR (for tests).
set -euo pipefail

# Take the token out of the environment before any other program runs: this script runs as root,
# and `npm ci` / `npm run build` run package lifecycle scripts that would otherwise inherit it.
TOKEN="${ORCHARD_TOKEN:-}"
unset ORCHARD_TOKEN
export -n TOKEN # in case the caller's environment had a TOKEN of its own

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

HUB="" TOKEN_FILE="" NAME="" LABELS="" DATA_DIR="/var/lib/orchard-agent" EXTRA="" START=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hub) HUB="${2:?}"; shift 2 ;;
    --token) TOKEN="${2:?}"; shift 2; warn "--token is visible to other users in ps while this runs; prefer --token-file FILE or ORCHARD_TOKEN" ;;
    --token-file) TOKEN_FILE="${2:?}"; shift 2 ;;
    --name) NAME="${2:?}"; shift 2 ;;
    --labels) LABELS="${2:?}"; shift 2 ;;
    --data-dir) DATA_DIR="${2:?}"; shift 2 ;;
    --extra) EXTRA="${2:?}"; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ -n "$HUB" ]] || die "--hub HOST[:PORT] is required"
if [[ -n "$TOKEN_FILE" ]]; then
  [[ -r "$TOKEN_FILE" ]] || die "cannot read --token-file $TOKEN_FILE"
  TOKEN="$(tr -d '[:space:]' <"$TOKEN_FILE")"
fi
[[ -n "$TOKEN" ]] || die "a join token is required: --token-file FILE or ORCHARD_TOKEN (orchard token create, on the hub)"
NAME="${NAME:-$(hostname | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9-\n' '-' | sed 's/^-*//; s/-*$//' | cut -c1-63)}"
[[ "$NAME" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "node name '$NAME' is not a DNS-1123 label; pass --name"

ETC_DIR="${ORCHARD_ETC_DIR:-/etc/orchard}"
UNIT_DIR="${ORCHARD_SYSTEMD_DIR:-/etc/systemd/system}"
[[ -n "${ORCHARD_ETC_DIR:-}${ORCHARD_SYSTEMD_DIR:-}" ]] || need_root "install a system service"

cd "$ORCHARD_ROOT"
ensure_node_deps
[[ -f dist/cli/main.js ]] || { log "building dist/"; npm run --silent build; }

mkdir -p "$ETC_DIR" "$UNIT_DIR"
chmod 0700 "$ETC_DIR"
umask 077
printf '%s\n' "$TOKEN" > "$ETC_DIR/join.token"
chmod 0600 "$ETC_DIR/join.token"
# An older install kept the token in an EnvironmentFile; it is not needed any more.
rm -f "$ETC_DIR/agent.env"
umask 022

args=(agent --hub "$HUB" --name "$NAME" --data-dir "$DATA_DIR" --token-file "$ETC_DIR/join.token")
[[ -n "$LABELS" ]] && args+=(--labels "$LABELS")
# shellcheck disable=SC2206 # EXTRA is deliberately split into words
[[ -n "$EXTRA" ]] && args+=($EXTRA)

cat > "$UNIT_DIR/orchard-agent.service" <<UNIT
[Unit]
Description=Orchard agent (node $NAME)
Documentation=file://$ORCHARD_ROOT/agent/README.md
After=network-online.target docker.service
Wants=network-online.target docker.service

[Service]
Type=simple
ExecStart=$(command -v node) $ORCHARD_ROOT/dist/cli/main.js ${args[*]}
# The agent never stops workloads on its own exit; systemd must not kill the containers either
# (they are the engine's children, not ours), and it restarts the agent after a crash.
KillMode=process
Restart=always
RestartSec=2
# Logs go to the journal, never to files on the SD card.
StandardOutput=journal
StandardError=journal

[Install]
WantedBy=multi-user.target
UNIT
log "wrote $UNIT_DIR/orchard-agent.service and $ETC_DIR/join.token (0600)"

if [[ $START -eq 1 ]]; then
  if have systemctl && [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl enable --now orchard-agent.service
    log "orchard-agent enabled and started: journalctl -u orchard-agent -f"
  else
    warn "systemd is not running here; start the agent by hand:"
    warn "  node $ORCHARD_ROOT/dist/cli/main.js ${args[*]}"
  fi
fi
