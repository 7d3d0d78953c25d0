#!/usr/bin/env bash
# Installs the Orchard agent on a device as a systemd service. The device needs only Node (20, 22
# or 24) and Docker: the agent is one file, fetched from the hub. This script is self-contained:
# copy it to the device on its own.
#
#   sudo bash install-agent.sh --hub HUB:8443 --token-file FILE [--name NAME] [--labels k=v,…]
#   sudo ORCHARD_TOKEN='K10…::…' bash install-agent.sh --hub HUB:8443 …
#
# 1. Fetches the single-file agent from https://HUB/agent/orchard-agent.mjs over TLS pinned to the
#    hub CA whose SHA-256 fingerprint the join token carries (K10<fingerprint>::…), exactly as the
#    agent's own join checks it, and verifies the file against the hub's sha256 of it. The join
#    token's secret never leaves this machine here (the agent sends it once, when it joins).
# 2. Installs it atomically as /usr/local/lib/orchard/orchard-agent.mjs, with the launcher
#    (orchard-agent-launcher.mjs, fetched and checked the same way) that systemd runs it under so
#    upgrades from the hub can swap the file and roll back by themselves.
# 3. Copies the token to /etc/orchard/join.token (0600, in a 0700 dir; the unit passes it as
#    --token-file, so it never shows in `ps` nor in the environment of processes the agent starts).
# 4. Writes /etc/systemd/system/orchard-agent.service running
#    `node <small-device V8 flags> …/orchard-agent-launcher.mjs --agent …/orchard-agent.mjs -- --hub … --token-file …`
#    and enables it.
# The agent keeps its identity and desired-set cache in /var/lib/orchard-agent; after the first
# join the token is not needed (/etc/orchard/join.token may be deleted).
#
# Options: --token-file FILE (or env ORCHARD_TOKEN; never on the command line, where every local
#          user reads it in ps), --name (default: this hostname, lowercased), --labels
#          (device-reported: the hub files zone=north as node.orchard.dev/zone=north; authoritative
#          labels come from the join token), --data-dir, --extra "ARGS" (more agent flags),
#          --agent-file FILE (install this file instead of fetching it: offline installs; the
#          --sha256 HEX given with it is checked; --launcher-file FILE with it installs the launcher
#          too, else the agent runs alone and cannot be upgraded from the hub), --no-start (write
#          files only).
#          Env: ORCHARD_ETC_DIR, ORCHARD_SYSTEMD_DIR, ORCHARD_LIB_DIR (for tests).
set -euo pipefail

# Take the token out of the environment before any other program runs: the node that fetches the
# agent gets only the CA fingerprint.
TOKEN="${ORCHARD_TOKEN:-}"
unset ORCHARD_TOKEN
export -n TOKEN # in case the caller's environment had a TOKEN of its own

log() { printf '[orchard %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[orchard %s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[orchard %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

HUB="" TOKEN_FILE="" NAME="" LABELS="" DATA_DIR="/var/lib/orchard-agent" EXTRA="" START=1 AGENT_FILE="" AGENT_SHA="" LAUNCHER_FILE=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hub) HUB="${2:?}"; shift 2 ;;
    --token) die "--token is not accepted: every local user can read it in ps; use --token-file FILE (mode 0600) or ORCHARD_TOKEN" ;;
    --token-file) TOKEN_FILE="${2:?}"; shift 2 ;;
    --name) NAME="${2:?}"; shift 2 ;;
    --labels) LABELS="${2:?}"; shift 2 ;;
    --data-dir) DATA_DIR="${2:?}"; shift 2 ;;
    --extra) EXTRA="${2:?}"; shift 2 ;;
    --agent-file) AGENT_FILE="${2:?}"; shift 2 ;;
    --sha256) AGENT_SHA="${2:?}"; shift 2 ;;
    --launcher-file) LAUNCHER_FILE="${2:?}"; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ -n "$HUB" ]] || die "--hub HOST[:PORT] is required"
if [[ -n "$TOKEN_FILE" ]]; then
  [[ -r "$TOKEN_FILE" ]] || die "cannot read --token-file $TOKEN_FILE"
  TOKEN="$(tr -d '[:space:]' <"$TOKEN_FILE")"
fi
[[ -n "$TOKEN" ]] || die "a join token is required: --token-file FILE or ORCHARD_TOKEN (orchard token create, on the hub)"
[[ "$TOKEN" =~ ^K10([0-9a-f]{64})::[a-z0-9]{6,32}\.[A-Za-z0-9_-]{16,128}$ ]] || die "malformed join token (expected K10<fingerprint>::<id>.<secret>, from orchard token create)"
CA_FP="${BASH_REMATCH[1]}"
NAME="${NAME:-$(hostname | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9-\n' '-' | sed 's/^-*//; s/-*$//' | cut -c1-63)}"
[[ "$NAME" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "node name '$NAME' is not a DNS-1123 label; pass --name"
[[ -z "$AGENT_SHA" || -n "$AGENT_FILE" ]] || die "--sha256 goes with --agent-file"

have node || die "node not found: install Node.js 20, 22 or 24 (the agent is one JavaScript file; nothing else is needed but Docker)"
NODE_BIN="$(command -v node)"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
case "$NODE_MAJOR" in
  20 | 22 | 24) ;;
  *) warn "Node $(node --version) is not a supported runtime (20, 22 or 24); the agent may still run" ;;
esac

ETC_DIR="${ORCHARD_ETC_DIR:-/etc/orchard}"
UNIT_DIR="${ORCHARD_SYSTEMD_DIR:-/etc/systemd/system}"
LIB_DIR="${ORCHARD_LIB_DIR:-/usr/local/lib/orchard}"
if [[ -z "${ORCHARD_ETC_DIR:-}${ORCHARD_SYSTEMD_DIR:-}${ORCHARD_LIB_DIR:-}" && "$(id -u)" -ne 0 ]]; then
  die "root is needed to install a system service (re-run as root, e.g. with sudo)"
fi

mkdir -p "$LIB_DIR" "$ETC_DIR" "$UNIT_DIR"
AGENT="$LIB_DIR/orchard-agent.mjs"
LAUNCHER="$LIB_DIR/orchard-agent-launcher.mjs"
NEW="$(mktemp --suffix=.mjs "$LIB_DIR/.orchard-agent.XXXXXX")" # .mjs: node runs it as ESM for the check below
NEW_LAUNCHER="$(mktemp --suffix=.mjs "$LIB_DIR/.orchard-agent-launcher.XXXXXX")"
trap 'rm -f "$NEW" "$NEW_LAUNCHER"' EXIT

# fetch HUB CA_FP OUT LAUNCHER_OUT — the pinned download (see the header): the agent and the
# launcher systemd runs it under (upgrades from the hub). Prints the agent's sha256.
fetch_agent() {
  node - "$1" "$2" "$3" "$4" <<'EOF'
const https = require('node:https');
const crypto = require('node:crypto');
const fs = require('node:fs');
const [hubArg, pin, out, launcherOut] = process.argv.slice(2);
const fail = (msg) => { process.stderr.write(`${msg}\n`); process.exit(1); };
let url;
try {
  url = new URL(/^[a-z]+:\/\//i.test(hubArg) ? hubArg : `https://${hubArg}`);
} catch { fail(`--hub ${hubArg} is not HOST[:PORT] or https://HOST:PORT`); }
if (url.protocol !== 'https:') fail(`--hub ${hubArg}: the agent is fetched over HTTPS only`);
const base = { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port === '' ? 8443 : Number(url.port), timeout: 30000 };
const get = (path, tls, max) => new Promise((resolve, reject) => {
  const req = https.get({ ...base, ...tls, path }, (res) => {
    const chunks = []; let n = 0;
    res.on('data', (c) => { n += c.length; if (n > max) req.destroy(new Error(`${path}: more than ${max} bytes`)); else chunks.push(c); });
    res.on('end', () => res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`GET ${path}: HTTP ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 300)}`)));
    res.on('error', reject);
  });
  req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer in 30 s`)));
  req.on('error', reject);
});
(async () => {
  // 1. The CA, unverified; it is trusted only if its fingerprint is the token's.
  const caPem = (await get('/api/v1/ca', { rejectUnauthorized: false }, 65536)).toString();
  let fp;
  try { fp = new crypto.X509Certificate(caPem).fingerprint256.replace(/:/g, '').toLowerCase(); } catch { fail(`${url.host}/api/v1/ca did not return a PEM certificate`); }
  if (fp !== pin) fail(`the hub at ${url.host} presents CA ${fp}, but the join token pins CA ${pin}; check the hub address and the token (or someone is intercepting)`);
  // 2. The agent and its hash over TLS verified against that CA (host name checked too).
  const tls = { ca: caPem, rejectUnauthorized: true };
  const fetchChecked = async (name) => {
    const file = await get(`/agent/${name}`, tls, 64 * 1024 * 1024);
    const want = (await get(`/agent/${name}.sha256`, tls, 1024)).toString().trim().split(/\s+/)[0];
    const got = crypto.createHash('sha256').update(file).digest('hex');
    if (got !== want) fail(`${name} from ${url.host}: sha256 ${got}, but the hub says ${want}`);
    return { file, got };
  };
  const agent = await fetchChecked('orchard-agent.mjs');
  const launcher = await fetchChecked('orchard-agent-launcher.mjs');
  fs.writeFileSync(out, agent.file);
  fs.writeFileSync(launcherOut, launcher.file);
  process.stdout.write(`${agent.got}\n`);
})().catch((err) => fail(`cannot fetch the agent from ${url.host}: ${err.message}`));
EOF
}

if [[ -n "$AGENT_FILE" ]]; then
  [[ -r "$AGENT_FILE" ]] || die "cannot read --agent-file $AGENT_FILE"
  cp "$AGENT_FILE" "$NEW"
  SHA="$(node -e 'process.stdout.write(require("node:crypto").createHash("sha256").update(require("node:fs").readFileSync(process.argv[1])).digest("hex"))' "$NEW")"
  [[ -z "$AGENT_SHA" || "$SHA" == "$AGENT_SHA" ]] || die "--agent-file $AGENT_FILE: sha256 $SHA, not the --sha256 given ($AGENT_SHA)"
  log "installing $AGENT_FILE (sha256 $SHA)"
else
  log "fetching the agent from https://${HUB#https://}/agent/orchard-agent.mjs (TLS pinned to CA ${CA_FP:0:16}…)"
  SHA="$(fetch_agent "$HUB" "$CA_FP" "$NEW" "$NEW_LAUNCHER")" || die "fetching the agent failed"
fi
# The launcher: fetched with the agent, or given beside an offline --agent-file (--launcher-file).
# Without one (an offline install that gave none) the agent runs directly: everything works but
# upgrades from the hub, which nodes then refuse with ERR_UPGRADE_UNSUPPORTED.
if [[ -n "$AGENT_FILE" ]]; then
  if [[ -n "$LAUNCHER_FILE" ]]; then
    [[ -r "$LAUNCHER_FILE" ]] || die "cannot read --launcher-file $LAUNCHER_FILE"
    cp "$LAUNCHER_FILE" "$NEW_LAUNCHER"
  else
    rm -f "$NEW_LAUNCHER"
    NEW_LAUNCHER=""
  fi
fi
chmod 0755 "$NEW"
# V8 flags and malloc settings for small devices (docs/agent.md "Memory"; AGENT_V8_FLAGS and
# AGENT_ENV in scripts/build-agent.ts, which a test keeps equal to these): young generation capped
# at 1 MiB, one GC thread, one platform worker, no JIT compilers (--jitless: the interpreter only,
# so V8's compilers' code is never paged in), no start-up snapshot (--no-node-snapshot: its pages
# of the node binary are never read), local time from libc, not ICU (--no-icu-timezone-data); one
# malloc arena, freed memory handed back to the kernel past 128 KiB, blocks of 32 KiB and more
# in mappings of their own (ends a 5 MiB malloc mode of the start). The launcher passes its
# flags and environment on to the agent it starts.
NODE_FLAGS="--max-semi-space-size=1 --single-threaded-gc --v8-pool-size=1 --jitless --no-node-snapshot --no-icu-timezone-data"
NODE_ENV_VARS="MALLOC_ARENA_MAX=1 MALLOC_TRIM_THRESHOLD_=131072 MALLOC_MMAP_THRESHOLD_=32768"
# --no-icu-timezone-data exists only in Node builds with ICU (the official ones are): a Node built
# without intl refuses it, and there it is dropped rather than the install refused.
if ! node --no-icu-timezone-data -e 0 >/dev/null 2>&1; then
  NODE_FLAGS="${NODE_FLAGS/ --no-icu-timezone-data/}"
  log "this Node has no ICU: --no-icu-timezone-data left out"
fi
# The file must run on this Node, with these flags, before it replaces anything.
# shellcheck disable=SC2086 # the flags and variables are deliberately split into words
VERSION="$(env $NODE_ENV_VARS node $NODE_FLAGS "$NEW" --version)" || die "the fetched agent does not run on Node $(node --version) with $NODE_FLAGS"
mv -f "$NEW" "$AGENT" # atomic: a running agent's file is never half-written
if [[ -n "$NEW_LAUNCHER" ]]; then
  chmod 0755 "$NEW_LAUNCHER"
  mv -f "$NEW_LAUNCHER" "$LAUNCHER"
fi
trap - EXIT
log "installed $AGENT: $VERSION, sha256 $SHA"

chmod 0700 "$ETC_DIR"
umask 077
printf '%s\n' "$TOKEN" >"$ETC_DIR/join.token"
chmod 0600 "$ETC_DIR/join.token"
# An older install kept the token in an EnvironmentFile; it is not needed any more.
rm -f "$ETC_DIR/agent.env"
umask 022

args=(--hub "$HUB" --name "$NAME" --data-dir "$DATA_DIR" --token-file "$ETC_DIR/join.token")
[[ -n "$LABELS" ]] && args+=(--labels "$LABELS")
# shellcheck disable=SC2206 # EXTRA is deliberately split into words
[[ -n "$EXTRA" ]] && args+=($EXTRA)

# Under the launcher (upgrades from the hub swap the agent file in $LIB_DIR and roll back by
# themselves: docs/agent.md "Upgrades"), or the agent alone when no launcher was installed;
# NODE_FLAGS and NODE_ENV_VARS above.
if [[ -n "$NEW_LAUNCHER" ]]; then
  EXEC_START="$NODE_BIN $NODE_FLAGS $LAUNCHER --agent $AGENT -- ${args[*]}"
else
  EXEC_START="$NODE_BIN $NODE_FLAGS $AGENT ${args[*]}"
fi

cat >"$UNIT_DIR/orchard-agent.service" <<UNIT
[Unit]
Description=Orchard agent (node $NAME)
After=network-online.target docker.service
Wants=network-online.target docker.service

[Service]
Type=simple
Environment=$NODE_ENV_VARS
ExecStart=$EXEC_START
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
    warn "  $NODE_ENV_VARS $NODE_BIN $NODE_FLAGS $AGENT ${args[*]}"
  fi
fi
