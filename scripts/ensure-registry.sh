#!/usr/bin/env bash
# Run a local image registry on 127.0.0.1:5000 (Debian's docker-registry) for tests of real pulls.
#   bash scripts/ensure-registry.sh          start it (idempotent)
#   bash scripts/ensure-registry.sh stop     stop the one this script started
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

case "${1:-start}" in
  start) ensure_registry && log "registry ready at $ORCHARD_REGISTRY_ADDR" ;;
  stop) stop_registry ;;
  *) die "usage: $0 [start|stop]" ;;
esac
