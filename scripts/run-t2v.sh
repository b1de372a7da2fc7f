#!/usr/bin/env bash
# Start the HunyuanVideo text-to-video container: the official README's `docker run -itd …` line,
# now through hvinfra (pre-flight checks, least privilege by default, clear errors).
# Any argument is passed on: scripts/run-t2v.sh --gpus 0,1 --privileged --dry-run
set -euo pipefail
exec hvinfra up t2v "$@"
