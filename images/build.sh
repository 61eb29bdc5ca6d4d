#!/bin/sh
# Builds StageScreen's images without a daemon or a registry: buildah with chroot isolation (no
# cgroups, no user namespaces) on a Debian bookworm base made with debootstrap, which stands in
# for the Dockerfiles' default python:3.11-slim-bookworm (Python 3.11, venv and pip, `python`).
#
#   images/build.sh base          the base, once (kept in buildah's storage; buildah rmi to redo)
#   images/build.sh operator      stagescreen-operator:dev  (Dockerfile.operator)
#   images/build.sh trainer       stagescreen-trainer:dev   (Dockerfile.trainer, PyPI's CUDA torch)
#   images/build.sh trainer-cpu   stagescreen-trainer:cpu   (the same with torch's CPU build)
#
# pip inside the build reaches the same package index as pip on this machine: PyPI, through the
# machine's CA bundle, which the base carries. The CPU build's torch wheel is what this machine's
# pip finds for the pin with a `+cpu` local version (here its wheel folder; elsewhere set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu), mounted into the build only.
# Root is needed (debootstrap, buildah's storage); make tools installs buildah and debootstrap.
set -eu

cd "$(dirname "$0")/.."
BASE=localhost/stagescreen-base:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
WORK=.build/images
PYTHON=${PYTHON:-python3}

say() { printf '%s\n' "images: $*" >&2; }

base() {
    if buildah inspect --type image "$BASE" > /dev/null 2>&1; then
        return
    fi
    rootfs=$WORK/rootfs
    rm -rf "$rootfs" && mkdir -p "$WORK"
    say "debootstrap bookworm from $MIRROR (about a minute)"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
        bookworm "$rootfs" "$MIRROR" > "$WORK/debootstrap.log"
    cp "$CA_BUNDLE" "$rootfs$CA_BUNDLE"
    # As in the python images, pip may install into the interpreter (the trainer's --target).
    rm "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
    echo "deb $MIRROR bookworm-updates main" >> "$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    container=$(buildah from scratch)
    tar -C "$rootfs" -cf "$WORK/rootfs.tar" .
    buildah add --quiet "$container" "$WORK/rootfs.tar" /
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python "$container"
    buildah commit --quiet --rm "$container" "$BASE" > /dev/null
    rm -rf "$rootfs" "$WORK/rootfs.tar"
}

# bud TAG ARGS...: build TAG, then remove the image TAG named before (nothing else keeps it).
bud() {
    tag=$1 && shift
    base
    before=$(buildah images --quiet --no-trunc "$tag" 2> /dev/null || true)
    buildah bud --isolation chroot --quiet --build-arg "BASE_IMAGE=$BASE" -t "$tag" "$@" .
    after=$(buildah images --quiet --no-trunc "$tag")
    if [ -n "$before" ] && [ "$before" != "$after" ]; then
        buildah rmi "$before" > /dev/null 2>&1 || true
    fi
}

# commit: the checkout's git commit, recorded in the trainer image (empty outside a checkout
# and, with uncommitted changes, the commit with "-dirty": the image is not that commit).
commit() {
    git describe --always --dirty --abbrev=40 --match=none 2> /dev/null || true
}

torch_cpu_wheels() {
    pin=$(sed -n 's/.*"torch==\([0-9.]*\)".*/\1/p' Dockerfile.trainer)
    rm -rf "$WORK/wheels" && mkdir -p "$WORK/wheels"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$WORK/wheels" \
        "torch==$pin+cpu"
    realpath "$WORK/wheels"
}

for target in "$@"; do
    case $target in
        base) base ;;
        operator) bud stagescreen-operator:dev -f Dockerfile.operator ;;
        trainer)
            bud stagescreen-trainer:dev -f Dockerfile.trainer --build-arg "TRAINER_COMMIT=$(commit)"
            ;;
        trainer-cpu)
            wheels=$(torch_cpu_wheels)
            bud stagescreen-trainer:cpu -f Dockerfile.trainer \
                --volume "$wheels:/wheels:ro" --build-arg TORCH_FIND_LINKS=/wheels \
                --build-arg "TRAINER_COMMIT=$(commit)"
            ;;
        *) say "unknown target $target (base, operator, trainer, trainer-cpu)" && exit 2 ;;
    esac
done
