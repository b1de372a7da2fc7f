#!/usr/bin/env bash
# Install the system packages the engine tests (tests/engine) need:
#   docker.io        dockerd 20.10 + containerd + runc + docker CLI; tests start a
#                    private dockerd of their own (tests/engine/dockerd.py), the
#                    system service is never enabled or started here.
#   busybox-static   the one binary the stand-in image's rootfs is made of.
#   docker-registry  a local registry (registry:2) for pull tests.
#   apache2-utils    htpasswd, for the local registry's auth.
#   gcc, libc6-dev   build the NVML-shaped stand-in library (tests/fixtures/nvml-stub).
#   openssl          certificates for the token-auth registry (tests/engine/token_registry.py).
#   docker-compose   compose 1.29: `hvinfra render compose` output started for real.
#   slurm-wlm munge  a one-node Slurm cluster the tests start (tests/engine/slurm_cluster.py).
#   chromium chromium-driver  the serve page's browser test (selenium, headless).
# Idempotent: does nothing (and never touches the network) when all are present.
set -euo pipefail

PACKAGES=(docker.io busybox-static docker-registry apache2-utils)
PACKAGES+=(gcc libc6-dev openssl)
PACKAGES+=(docker-compose slurm-wlm munge)
PACKAGES+=(chromium chromium-driver)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-test-deps: all present (${PACKAGES[*]})"
    exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    SUDO=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# Never let package scripts enable or start services (dockerd, containerd, the
# registry): policy-rc.d exit 101 = "action forbidden" for invoke-rc.d, and
# deb-systemd-invoke is a no-op without a running systemd anyway.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [[ $created_policy -eq 1 ]]; then
        "${SUDO[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT

echo "install-test-deps: installing ${missing[*]}"
# Refresh the package lists only when a first install attempt cannot find them.
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
