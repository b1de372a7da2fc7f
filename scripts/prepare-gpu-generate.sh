#!/usr/bin/env bash
# Build what scripts/gpu-generate-smoke.sh needs on the GPU runner (no network there), under
# the device call's 64 MiB (carry DEST/a and DEST/b/repo):
#   DEST/a/bundle     the engine bundle (scripts/prepare-gpu-bundle.sh's .gpu-bundle)
#   DEST/a/wheels     the official Python pins: transformers 4.46.3, tokenizers 0.20.3,
#                     diffusers 0.31.0, huggingface_hub 0.26.5, accelerate 1.1.1, loguru,
#                     importlib_metadata (test fixtures of the runner, never part of hvinfra;
#                     imageio-ffmpeg, 27 MB, would not fit: a stand-in writes the .mp4 with
#                     OpenCV, tests/fixtures/gpu-runner/site/imageio_ffmpeg)
#   DEST/a/code-t2v, DEST/a/code-i2v   the official code at the profiles' pinned commits, as
#                     git checkouts (sparse: no assets/) built from a local clone or mirror
#   DEST/b/repo       this checkout's files (tracked + untracked-not-ignored)
#
#   scripts/prepare-gpu-generate.sh DEST T2V_GIT_DIR I2V_GIT_DIR
# T2V_GIT_DIR / I2V_GIT_DIR: git directories holding the pinned commits (a clone's .git or a
# bare mirror of github.com/Tencent-Hunyuan/HunyuanVideo and HunyuanVideo-I2V).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:?DEST}; T2V_GIT=${2:?T2V_GIT_DIR}; I2V_GIT=${3:?I2V_GIT_DIR}
PY=${PYTHON:-python3}
PINS=(transformers==4.46.3 tokenizers==0.20.3 diffusers==0.31.0 huggingface_hub==0.26.5
      accelerate==1.1.1 loguru==0.7.2 importlib_metadata==8.5.0)
commit_of() { "$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["models"]["code"]["commit"])' "$1"; }

download() {  # DIR PACKAGES...: wheels for the runner's CPython 3.12 on x86-64
    local dir=$1; shift
    mkdir -p "$dir"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform any \
        -d "$dir" "$@"
}

# checkout GIT_DIR COMMIT DEST: a git checkout at COMMIT without assets/ (only the commit, its
# trees and the blobs outside assets/ are packed: ~1 MB instead of the repo's history)
checkout() {
    local src=$1 commit=$2 dest=$3
    rm -rf "$dest"; git init -q "$dest"
    {
        echo "$commit"; git --git-dir="$src" rev-parse "$commit^{tree}"
        git --git-dir="$src" ls-tree -r -t "$commit" | awk '$2=="tree" || $4 !~ /^assets\// {print $3}' |
            while read -r o; do git --git-dir="$src" cat-file -e "$o" 2>/dev/null && echo "$o"; done
    } | git --git-dir="$src" pack-objects -q "$dest/.git/objects/pack/pack" >/dev/null
    (cd "$dest" && git update-ref refs/heads/main "$commit" && git symbolic-ref HEAD refs/heads/main &&
        git sparse-checkout set --no-cone '/*' '!/assets/' && git read-tree -mu HEAD &&
        test -z "$(git status --porcelain --untracked-files=no)")
    echo "code $dest at $(git -C "$dest" rev-parse --short HEAD)"
}

mkdir -p "$DEST/a" "$DEST/b"
[[ -d .gpu-bundle/bin ]] || bash scripts/prepare-gpu-bundle.sh
rm -rf "$DEST/a/bundle" && cp -a .gpu-bundle "$DEST/a/bundle"
download "$DEST/a/wheels" "${PINS[@]}"
checkout "$T2V_GIT" "$(commit_of src/hvinfra/configs/t2v.yaml)" "$DEST/a/code-t2v"
checkout "$I2V_GIT" "$(commit_of src/hvinfra/configs/i2v.yaml)" "$DEST/a/code-i2v"
rm -rf "$DEST/b/repo" && mkdir -p "$DEST/b/repo"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C "$DEST/b/repo" -xf -
du -sh "$DEST/a" "$DEST/b"
