#!/usr/bin/env bash
# Make sure a Docker Engine answers `docker info`: installs Debian's docker.io and starts dockerd
# in the background when needed (no systemd). See ensure_docker in lib/common.sh for the retries.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ensure_docker
docker version --format 'Docker Engine {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}}'
