# Sourced by the GPU runner's smoke scripts: a private dockerd from the carried bundle
# (scripts/prepare-gpu-bundle.sh) and the empty stand-in image. Expects BUNDLE, WORK, HV_PY and
# the functions step/fail; sets DOCKERD_PID. The runner has no Docker, no curl, no network.

# GET on the private daemon's socket, without curl
api_get() {
    "$HV_PY" - "$WORK/docker.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
    s.sendall(f"GET {sys.argv[2]} HTTP/1.0\r\nHost: d\r\n\r\n".encode())
    data = b"".join(iter(lambda: s.recv(65536), b""))
except OSError:
    sys.exit(1)
head, _, body = data.partition(b"\r\n\r\n")
sys.stdout.write(body.decode(errors="replace"))
sys.exit(0 if b" 200 " in head.split(b"\r\n")[0] else 1)
PY
}

unxz_to() {  # xz if the host has it, else Python's lzma
    if command -v xz >/dev/null; then xz -dc "$1" >"$2"
    else "$HV_PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}

engine_unpack() {
    step "unpack the engine"
    mkdir -p "$WORK/bin" "$WORK/lib" "$WORK/site" "$WORK/config"
    for f in "$BUNDLE"/bin/*.xz; do unxz_to "$f" "$WORK/bin/$(basename "$f" .xz)" || { fail "unpack $f"; return 1; }; done
    cp "$BUNDLE/bin/docker-init" "$WORK/bin/"
    cp "$BUNDLE"/lib/* "$WORK/lib/"
    chmod 0755 "$WORK"/bin/*
    if ! "$HV_PY" -c 'import pydantic, docker' 2>/dev/null; then
        "$HV_PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$WORK/site" "$BUNDLE"/wheels/*.whl || { fail "wheels"; return 1; }
    fi
}

engine_start() {
    step "start a private dockerd (--iptables=false --bridge=none, own roots and socket)"
    echo '{}' >"$WORK/daemon.json"  # the host's /etc/docker is never read
    env PATH="$WORK/bin:$PATH" LD_LIBRARY_PATH="$WORK/lib" "$WORK/bin/dockerd" \
        --host "unix://$WORK/docker.sock" --data-root "$WORK/data" --exec-root "$WORK/exec" \
        --pidfile "$WORK/dockerd.pid" --config-file "$WORK/daemon.json" --storage-driver "${SMOKE_STORAGE_DRIVER:-vfs}" \
        --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
        >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 120); do
        [[ -S "$WORK/docker.sock" ]] && api_get /_ping >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    if ! api_get /_ping >/dev/null 2>&1; then
        fail "dockerd did not start"; tail -40 "$WORK/dockerd.log"; return 1
    fi
    echo "dockerd $DOCKERD_PID answers on unix://$WORK/docker.sock"
}

engine_import_standin() {  # $1: image ref; an empty rootfs with /tmp and /etc
    step "import the stand-in image $1"
    mkdir -p "$WORK/rootfs/tmp" "$WORK/rootfs/etc" && chmod 1777 "$WORK/rootfs/tmp"
    tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" . || { fail "rootfs tar"; return 1; }
    env PYTHONPATH="$WORK/site" DOCKER_HOST="unix://$WORK/docker.sock" "$HV_PY" - "$WORK/rootfs.tar" "$1" <<'PY' || { fail "image import"; return 1; }
import sys, docker
repo, tag = sys.argv[2].rsplit(":", 1)
client = docker.from_env()
with open(sys.argv[1], "rb") as f:
    client.api.import_image_from_data(f.read(), repository=repo, tag=tag, changes=['CMD ["/bin/sh"]'])
image = client.images.get(sys.argv[2])
print("imported", image.tags, image.id[:19], client.version()["Version"])
PY
}

engine_stop() {
    if [[ -n "${DOCKERD_PID:-}" ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$DOCKERD_PID" 2>/dev/null && echo "dockerd killed" || echo "dockerd stopped"
    fi
}
