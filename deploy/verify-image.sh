#!/bin/sh
# verify-image.sh - build the container image and check it does what the manifests rely on.
#
#   deploy/verify-image.sh [TAG]        (default aibrix-runtime:verify; run from anywhere, as root)
#
# Needs a running Docker daemon. When the base image (debian:bookworm, debian:bookworm-slim)
# cannot be pulled (no registry access), it is made locally with debootstrap from Debian's
# mirror and imported under those names. Then, with the image:
#   1. a container mounts a generated file:// model at /models with /dev/fuse and SYS_ADMIN;
#      /healthz and /ready answer 200 and every file reads back with the source's sha256;
#   2. /models is bind-mounted rshared from the host and read by a second container through an
#      rslave bind: the propagation pair of the Kubernetes manifests (Bidirectional in the
#      sidecar, HostToContainer in the engine);
#   3. `docker stop` (SIGTERM) exits 0 and leaves no FUSE mount behind on the host.
# Exits non-zero, naming the step, on the first failure. Not part of `make test`: CI has no
# Docker daemon.
set -eu

tag=${1:-aibrix-runtime:verify}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/aibrix-verify.XXXXXX)
name=aibrix-verify-$$
port=18080
cleanup() {
    docker rm -f "$name" >/dev/null 2>&1 || true
    if mountpoint -q "$work/shared"; then umount -l "$work/shared" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
fail() { echo "verify-image: FAILED: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || fail "no Docker daemon (start dockerd)"

if ! docker image inspect debian:bookworm >/dev/null 2>&1 && ! docker pull -q debian:bookworm; then
    echo "verify-image: no registry: making debian:bookworm with debootstrap"
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >/dev/null
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" -c . | docker import - debian:bookworm >/dev/null
    rm -rf "$work/rootfs"
fi
docker image inspect debian:bookworm-slim >/dev/null 2>&1 || docker pull -q debian:bookworm-slim ||
    docker tag debian:bookworm debian:bookworm-slim

echo "verify-image: building $tag"
DOCKER_BUILDKIT=0 docker build -q -f "$root/deploy/Dockerfile" -t "$tag" \
    --build-arg REVISION="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" "$root" >/dev/null ||
    fail "docker build"

python3 "$root/tests/fakes/modelgen.py" --size 8M --shards 2 "$work/model" >/dev/null
mkdir -p "$work/shared"
mount --bind "$work/shared" "$work/shared"
mount --make-rshared "$work/shared"
docker run -d --name "$name" --device /dev/fuse --cap-add SYS_ADMIN --security-opt apparmor=unconfined \
    -p "127.0.0.1:$port:8080" -v "$work/shared:/models:rshared" -v "$work/model:/src:ro" \
    "$tag" --port 8080 --mount-point /models --cache-dir /cache --model demo=file:///src >/dev/null ||
    fail "docker run"

i=0
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = 200 ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "/ready did not turn 200: $(docker logs "$name" 2>&1 | tail -5)"
    sleep 0.2
done
[ "$(curl -s "http://127.0.0.1:$port/healthz")" = '{"status":"ok"}' ] || fail "/healthz"
echo "verify-image: /healthz and /ready answer 200"

want=$(cd "$work/model" && find . -type f | sort | xargs sha256sum)
got=$(docker exec "$name" sh -c 'cd /models/demo && find . -type f | sort | xargs sha256sum')
[ "$got" = "$want" ] || fail "bytes read in the runtime's container differ from the source"
got=$(docker run --rm -v "$work/shared:/models:rslave" --entrypoint sh "$tag" \
    -c 'cd /models/demo && find . -type f | sort | xargs sha256sum')
[ "$got" = "$want" ] || fail "bytes read through the propagated mount differ from the source"
echo "verify-image: every file right in the container and through the rslave bind of another"

docker stop -t 10 "$name" >/dev/null
code=$(docker inspect "$name" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || fail "exit status $code after SIGTERM"
if grep -q " $work/shared fuse" /proc/mounts; then
    fail "a FUSE mount is left on the host"
fi
echo "verify-image: SIGTERM exits 0 and releases the mount; $tag is good"
