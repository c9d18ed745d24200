#!/usr/bin/env bash
# Build the OCI image and prove it through real `podman run`, from a fresh clone on one of our machines.
#
#   bash scripts/image.sh        # what `make image` and .ci/run do; leaves $IMAGE tagged
#
# In order: install podman and what it needs (Debian's packages, once), write the host settings
# `podman run` needs here, make the Debian base image unless it exists (debootstrap; no registry is
# reachable), build the Containerfile, run the smoke tests (tests/image/, real containers on loopback
# ports) and, where podman-compose runs, the compose deployment in deploy/. Every container, pod,
# network and volume it starts carries this run's name and is removed on exit, failed or not.
#
# A host that cannot run containers at all (not root, no podman to be had, a kernel that will not
# start one) is said plainly and skipped with status 0, so a host quirk never blocks other changes;
# a fault of the image (the build, a smoke test) fails with a non-zero status.
#
# Settings (environment): IMAGE (default localhost/flashsnap-mcp:dev), BASE_IMAGE (default the local
# localhost/debian:bookworm, made here when missing; any Debian bookworm-based image works, e.g.
# docker.io/library/python:3.12-slim where a registry is reachable), FLASHSNAP_IMAGE_SKIP=1 to skip,
# FLASHSNAP_IMAGE_MEASURE=1 to also print the compressed size and the size of each layer.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/flashsnap-mcp:dev}
LOCAL_BASE=localhost/debian:bookworm
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}
VALKEY_IMAGE=localhost/valkey-standin:bookworm
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
RUN_ID="flashsnap-smoke-$$"
CONF=/etc/containers/containers.conf
CONF_MARK="# Written by flashsnap-mcp's scripts/image.sh"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

say() { printf 'image: %s\n' "$*" >&2; }
skip() {
    say "SKIPPED, this host cannot build or run containers: $*"
    say "(the image is not tested here; the rest of the checks are unaffected)"
    exit 0
}
fail() {
    say "FAILED: $*"
    exit 1
}

timings=()
phase_start=$SECONDS
phase_done() { # name: record how long the phase since the last call took
    timings+=("$1 $((SECONDS - phase_start)) s")
    phase_start=$SECONDS
}

rootfs=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if command -v podman >/dev/null 2>&1; then
        # Whatever this run started and the tests could not remove (a kill, a crash): by label.
        local ids
        ids=$(podman ps -aq --filter "label=io.flashsnap.smoke=$RUN_ID" 2>/dev/null || true)
        ids+=" $(podman ps -aq --filter "label=io.podman.compose.project=$RUN_ID" 2>/dev/null || true)"
        if [ -n "${ids// /}" ]; then
            # shellcheck disable=SC2086
            podman rm -f -v -t 0 $ids >/dev/null 2>&1 || true
        fi
        podman pod rm -f "pod_$RUN_ID" >/dev/null 2>&1 || true
        podman network rm -f "${RUN_ID}_default" >/dev/null 2>&1 || true
        podman volume ls -q --filter "label=io.podman.compose.project=$RUN_ID" 2>/dev/null |
            xargs -r podman volume rm -f >/dev/null 2>&1 || true
    fi
    if [ -n "$rootfs" ]; then rm -rf "$rootfs"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "${FLASHSNAP_IMAGE_SKIP:-}" = 1 ]; then
    say "skipped: FLASHSNAP_IMAGE_SKIP=1"
    exit 0
fi
[ "$(uname -s)" = Linux ] || skip "podman is set up here for Linux hosts only, this is $(uname -s)"
[ "$(id -u)" = 0 ] || skip "installing podman and writing $CONF need root; run as root (CI does)"

# 1. Tools, from Debian's packages; nothing to do when they are there.
packages=(podman runc netavark aardvark-dns iptables debootstrap podman-compose)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || skip "no apt-get to install ${missing[*]}"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
        skip "apt-get could not install ${missing[*]}"
    fi
fi

# 2. Host settings. Root cannot raise the open-files hard limit here, so containers get the host's
# own limits (podman's default asks for more and fails in setrlimit); the cgroups are in hybrid
# mode, which crun refuses, so runc runs them; netavark gives the networks DNS for compose.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
settings="$CONF_MARK: what \`podman run\` needs on these hosts.
[containers]
default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=32768:32768\"]

[engine]
runtime = \"runc\"

[network]
network_backend = \"netavark\""
if [ -e "$CONF" ] && ! grep -qF "$CONF_MARK" "$CONF"; then
    say "leaving $CONF as it is (not written by this script)"
elif [ "$(cat "$CONF" 2>/dev/null)" != "$settings" ]; then
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$settings" >"$CONF"
    say "wrote $CONF"
fi
podman info >/dev/null 2>&1 || skip "\`podman info\` fails: $(podman info 2>&1 | tail -n 1)"
phase_done "host setup"

# 3. The base image: a minimal Debian made with debootstrap, kept in podman's storage for later runs.
if [ "$BASE_IMAGE" = "$LOCAL_BASE" ] && ! podman image exists "$LOCAL_BASE"; then
    say "making $LOCAL_BASE with debootstrap (once per machine)"
    rootfs=$(mktemp -d /var/tmp/flashsnap-rootfs.XXXXXX)
    if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1; then
        tail -n 5 "$rootfs.log" >&2
        rm -f "$rootfs.log"
        skip "debootstrap could not make a Debian $SUITE root file system"
    fi
    rm -f "$rootfs.log"
    # What a slim image leaves out: documentation, manuals and translations, now and in later installs.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/etc/{hostname,resolv.conf}
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
        "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" >"$rootfs/etc/apt/sources.list"
    tar --numeric-owner -C "$rootfs" -c . |
        podman import -q --change 'CMD ["/bin/bash"]' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
    rootfs=""
fi
podman image exists "$BASE_IMAGE" || podman pull -q "$BASE_IMAGE" >/dev/null 2>&1 ||
    skip "no base image $BASE_IMAGE, and it cannot be pulled"
# Can this host run a container at all? Asked of the base, so that a failure here is the host's, not the image's.
if ! probe=$(podman run --rm --network none --name "$RUN_ID-probe" --label "io.flashsnap.smoke=$RUN_ID" \
    "$BASE_IMAGE" true 2>&1); then
    skip "\`podman run\` fails: $(tail -n 1 <<<"$probe")"
fi
phase_done "base image"

# 4. The image. The host's CA bundle goes in as a build secret (downloads may pass a proxy with a CA
# of its own); the version and commit become labels.
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
server_name=$(python3 -c 'import json; print(json.load(open("server.json"))["name"])')
build=(podman build --layers -f Containerfile
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$version" --build-arg "REVISION=$revision"
    --build-arg "SERVER_NAME=$server_name")
if [ -s "$CA_BUNDLE" ]; then build+=(--secret "id=ca_bundle,src=$CA_BUNDLE"); fi
say "building $IMAGE from $BASE_IMAGE"
# The builder stage is tagged too: its layers are the cache of the next build (the locked dependencies
# above all), and what is tagged survives the prune below, which drops earlier builds' leftovers.
if ! { "${build[@]}" --target builder -t "$IMAGE-builder" . && "${build[@]}" -t "$IMAGE" .; } \
    >"/tmp/$RUN_ID-build.log" 2>&1; then
    tail -n 40 "/tmp/$RUN_ID-build.log" >&2
    rm -f "/tmp/$RUN_ID-build.log"
    fail "the image did not build"
fi
rm -f "/tmp/$RUN_ID-build.log"
podman image prune -f >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
phase_done "build"

# 5. A stand-in for Valkey for the compose test (no registry here): Debian's Redis 7, protocol-compatible.
compose=""
if command -v podman-compose >/dev/null; then
    if podman build --layers -q -f tests/image/valkey.Containerfile --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        -t "$VALKEY_IMAGE" tests/image >"/tmp/$RUN_ID-valkey.log" 2>&1; then
        compose=1
    else
        tail -n 20 "/tmp/$RUN_ID-valkey.log" >&2
        say "the Valkey stand-in did not build: the compose test is skipped"
    fi
    rm -f "/tmp/$RUN_ID-valkey.log"
fi

# 6. The smoke tests, with the project's own test environment (the MCP client of the locked SDK).
make -s sync
env FLASHSNAP_TEST_IMAGE="$IMAGE" FLASHSNAP_TEST_RUN="$RUN_ID" \
    FLASHSNAP_TEST_VALKEY_IMAGE="${compose:+$VALKEY_IMAGE}" \
    .venv/bin/python -m pytest tests/image -p no:cacheprovider -q ||
    fail "the smoke tests failed against $IMAGE"
phase_done "smoke tests"

if [ "${FLASHSNAP_IMAGE_MEASURE:-}" = 1 ]; then
    compressed=$(podman save --format oci-archive "$IMAGE" 2>/dev/null | gzip -6 | wc -c)
    say "compressed (oci-archive | gzip -6): $((compressed / 1000000)) MB"
    podman history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-150 >&2
fi
say "$IMAGE: $((size / 1000000)) MB; ${timings[*]/%/;} total $SECONDS s"
