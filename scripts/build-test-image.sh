#!/usr/bin/env bash
# Build the local test images orchard-test/busybox:1 and :2 from Debian's busybox-static
# (no registry needed). Idempotent: existing images are kept; pass --force to rebuild them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

if [[ "${1:-}" == "--force" ]]; then
  ensure_docker
  docker image rm "$ORCHARD_TEST_IMAGE" "$ORCHARD_TEST_IMAGE_2" >/dev/null 2>&1 || true
fi
ensure_test_image
docker image ls orchard-test/busybox
