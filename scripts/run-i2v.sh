#!/usr/bin/env bash
# Start the HunyuanVideo image-to-video container: the official README's `docker run -itd …` line,
# now through hvinfra (pre-flight checks, least privilege by default, clear errors).
# Any argument is passed on: scripts/run-i2v.sh --gpus 0 --dry-run
set -euo pipefail
exec hvinfra up i2v "$@"
