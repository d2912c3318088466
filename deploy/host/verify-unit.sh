#!/bin/sh
# verify-unit.sh - run the Debian package's systemd unit under a real systemd and check it.
#
#   deploy/host/verify-unit.sh            (from anywhere, as root, with a running Docker daemon)
#
# The development machines have no systemd as PID 1, so the unit is checked in a container
# whose PID 1 is systemd: `make deb`, then an image FROM debian:bookworm (made with debootstrap
# by deploy/verify-image.sh when no registry is reachable) with systemd and the package
# installed, a generated file:// model in AIBRIX_MODELS and the unit enabled. The container
# gets CAP_SYS_ADMIN and /dev/fuse (what the unit's DeviceAllow and CapabilityBoundingSet
# expect from the host). Checked: the unit starts with all its hardening (seccomp filter,
# capability bounding set, device policy), /ready answers 200, every file reads back with the
# source's sha256 through /models, `systemctl stop` ends with Result=success and exit status 0
# and no mount left on /models (and nothing in the journal about it), `systemctl start` serves
# again, and after a SIGKILL systemd restarts it onto a clean /models (one mount, not two).
# Not part of `make test`.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/aibrix-unit.XXXXXX)
name=aibrix-unit-$$
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
fail() { echo "verify-unit: FAILED: $*" >&2; exit 1; }
in_ct() { docker exec "$name" sh -c "$1"; }

docker info >/dev/null 2>&1 || fail "no Docker daemon (start dockerd)"
docker image inspect debian:bookworm >/dev/null 2>&1 || docker pull -q debian:bookworm ||
    fail "no debian:bookworm image (deploy/verify-image.sh makes one with debootstrap)"
make -C "$root" -s deb >/dev/null
cp "$root"/build-deb/aibrix-runtime_*_*.deb "$work/"
python3 "$root/tests/fakes/modelgen.py" --size 8M --shards 2 "$work/model" >/dev/null
cat >"$work/Dockerfile" <<'EOF'
FROM debian:bookworm
COPY *.deb /tmp/
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        systemd systemd-sysv curl /tmp/*.deb && rm -rf /var/lib/apt/lists/*
COPY model /srv/model
RUN echo 'AIBRIX_MODELS=demo=file:///srv/model' >> /etc/default/aibrix-runtime \
 && systemctl enable aibrix-runtime
CMD ["/lib/systemd/systemd"]
EOF
DOCKER_BUILDKIT=0 docker build -q -t aibrix-unit-verify "$work" >/dev/null || fail "docker build"
docker run -d --name "$name" --cap-add SYS_ADMIN --device /dev/fuse --security-opt seccomp=unconfined \
    --security-opt apparmor=unconfined --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock -e container=docker aibrix-unit-verify >/dev/null || fail "docker run"

ready() { in_ct 'curl -s -o /dev/null -w "%{http_code}" localhost:8080/ready' 2>/dev/null || true; }
wait_ready() {
    i=0
    until [ "$(ready)" = 200 ]; do
        i=$((i + 1))
        [ $i -lt 150 ] || fail "/ready not 200: $(in_ct 'systemctl status aibrix-runtime --no-pager' 2>&1 | tail -8)"
        sleep 0.2
    done
}
wait_ready
echo "verify-unit: systemd $(in_ct 'systemctl --version | head -1 | cut -d" " -f2') runs the unit; /ready is 200"

want=$(cd "$work/model" && find . -type f | sort | xargs sha256sum)
got=$(in_ct 'cd /models/demo && find . -type f | sort | xargs sha256sum')
[ "$got" = "$want" ] || fail "bytes read through /models differ from the source"
echo "verify-unit: every file right through /models"

in_ct 'systemctl stop aibrix-runtime'
state=$(in_ct 'systemctl show aibrix-runtime -p Result -p ExecMainStatus --value | tr "\n" " "')
[ "$state" = "success 0 " ] || fail "after systemctl stop: Result/ExecMainStatus = $state"
in_ct 'grep -q " /models fuse" /proc/mounts' && fail "a mount is left on /models after stop"
echo "verify-unit: systemctl stop: Result=success, exit 0, /models released"

in_ct 'journalctl -u aibrix-runtime --no-pager | grep -q "failed to unmount"' &&
    fail "the journal has an unmount failure after a clean stop"
echo "verify-unit: systemctl stop: nothing about unmounting in the journal"

in_ct 'systemctl start aibrix-runtime'
wait_ready
echo "verify-unit: systemctl start serves again"

pid=$(in_ct 'systemctl show aibrix-runtime -p MainPID --value')
in_ct 'systemctl kill -s KILL aibrix-runtime'
i=0
until [ "$(in_ct 'systemctl show aibrix-runtime -p MainPID --value')" != "$pid" ] && [ "$(ready)" = 200 ]; do
    i=$((i + 1))
    [ $i -lt 150 ] || fail "no restart after SIGKILL: $(in_ct 'systemctl status aibrix-runtime --no-pager' 2>&1 | tail -8)"
    sleep 0.2
done
mounts=$(in_ct 'grep -c " /models fuse" /proc/mounts || true')
[ "$mounts" = 1 ] || fail "$mounts FUSE mounts on /models after the restart (want 1)"
echo "verify-unit: after SIGKILL systemd restarted it onto a clean /models; the unit is good"
