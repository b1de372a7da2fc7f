#!/usr/bin/env bash
# Build .gpu-bundle/: what scripts/gpu-smoke.sh needs on the GPU runner, which has no Docker,
# no network and no pydantic/docker-py. Run HERE (Debian, root or sudo), before the device call
# that names `.gpu-bundle` in `carry`.
#
#   bin/   dockerd containerd containerd-shim-runc-v2 runc docker-proxy (xz), docker-init
#          (tini-static, as dockerd's --init binary)
#   lib/   libdevmapper.so.1.02.1 (dockerd), libseccomp.so.2 (runc): absent on the runner
#   wheels/ pydantic, pydantic-core, annotated-types, typing-inspection, typing-extensions,
#          docker (requests, urllib3, typer, rich, pyyaml, nvidia-ml-py are already there)
#
# The project itself is not packed: the checkout travels, and the smoke runs with PYTHONPATH=src.
# Usage: scripts/prepare-gpu-bundle.sh [--force]   (--force rebuilds from scratch)
set -euo pipefail

cd "$(dirname "$0")/.."
BUNDLE=.gpu-bundle
LIMIT_MIB=64
PY=${PYTHON:-python3}
# The versions this project is tested with (keep in step with pyproject's ranges).
WHEELS=(
    "pydantic==2.14.4" "pydantic-core==2.50.5" "annotated-types==0.8.0"
    "typing-inspection==0.4.5" "typing-extensions==4.16.0" "docker==7.2.0"
)

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "$BUNDLE"
fi

# 1. ignore the bundle (it must travel only through `carry`, never as part of the tree)
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$BUNDLE/" "$exclude" 2>/dev/null || echo "/$BUNDLE/" >>"$exclude"

# 2. Debian's docker.io (+ tini) here
if [[ -x scripts/install-test-deps.sh ]]; then
    scripts/install-test-deps.sh
fi
if [[ ! -x /usr/sbin/dockerd || ! -x /usr/bin/tini-static ]]; then
    SUDO=()
    [[ "$(id -u)" -eq 0 ]] || SUDO=(sudo)
    "${SUDO[@]}" apt-get install -y --no-install-recommends docker.io tini \
        || { "${SUDO[@]}" apt-get update && "${SUDO[@]}" apt-get install -y --no-install-recommends docker.io tini; }
fi

find_bin() {
    local name=$1 dir
    for dir in /usr/sbin /usr/bin /sbin /bin; do
        [[ -x "$dir/$name" ]] && { echo "$dir/$name"; return; }
    done
    echo "prepare-gpu-bundle: $name not found (is docker.io installed?)" >&2
    exit 1
}
find_lib() {
    local name=$1 dir
    for dir in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64; do
        [[ -e "$dir/$name" ]] && { readlink -f "$dir/$name"; return; }
    done
    echo "prepare-gpu-bundle: $name not found" >&2
    exit 1
}

mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/wheels"

# 3. the engine's binaries, xz-compressed (about 145 MB -> 35 MB); skipped when up to date
for name in dockerd containerd containerd-shim-runc-v2 runc docker-proxy; do
    src="$(find_bin "$name")"
    dst="$BUNDLE/bin/$name.xz"
    if [[ ! -s "$dst" || "$src" -nt "$dst" ]]; then
        echo "prepare-gpu-bundle: xz $src"
        xz -T0 -9 -c "$src" >"$dst.tmp" && mv "$dst.tmp" "$dst"
    fi
done
install -m 0755 "$(find_bin tini-static)" "$BUNDLE/bin/docker-init"
install -m 0644 "$(find_lib libdevmapper.so.1.02.1)" "$BUNDLE/lib/libdevmapper.so.1.02.1"
install -m 0644 "$(find_lib libseccomp.so.2)" "$BUNDLE/lib/libseccomp.so.2"

# 4. wheels for Python 3.12 x86-64 (the runner's /opt/torch/.venv/bin/python3)
have_all=1
for spec in "${WHEELS[@]}"; do
    stem="${spec%%==*}"; stem="${stem//-/_}"; version="${spec##*==}"
    compgen -G "$BUNDLE/wheels/${stem}-${version}-*.whl" >/dev/null || have_all=0
done
if [[ $have_all -eq 0 ]]; then
    rm -f "$BUNDLE"/wheels/*.whl
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$BUNDLE/wheels" "${WHEELS[@]}"
fi

# 5. what was packed, and the size of everything the device call sends
{
    echo "built $(date -u +%FT%TZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
    dpkg-query -W -f='${Package} ${Version}\n' docker.io containerd runc tini 2>/dev/null || true
    (cd "$BUNDLE" && ls -l bin lib wheels)
} >"$BUNDLE/MANIFEST"

bundle_kib=$(du -sk "$BUNDLE" | cut -f1)
tree_kib=$(git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total_kib=$((bundle_kib + tree_kib))
awk -v b="$bundle_kib" -v t="$tree_kib" -v n="$BUNDLE" -v l="$LIMIT_MIB" 'BEGIN {
    printf "prepare-gpu-bundle: %s = %.1f MiB; checkout (tracked + untracked-not-ignored) = %.1f MiB; total %.1f MiB of %d MiB\n", n, b/1024, t/1024, (b+t)/1024, l }'
if ((total_kib > LIMIT_MIB * 1024 * 9 / 10)); then
    echo "prepare-gpu-bundle: over 90% of the ${LIMIT_MIB} MiB limit: the device call may be refused" >&2
    exit 1
fi
