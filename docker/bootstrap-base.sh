#!/usr/bin/env bash
# Build a Debian bookworm + Python 3.11 base image from Debian packages, for machines that cannot
# pull images from a registry (no Docker Hub). The result is tagged local/debian-python:bookworm
# (override with BASE_TAG) and can be passed to docker/build.sh as BASE_IMAGE.
#
#   sudo docker/bootstrap-base.sh            # needs root, debootstrap and a running dockerd
#
# MIRROR defaults to the first Debian archive URI in apt's sources (the one this machine can reach).
set -euo pipefail

BASE_TAG="${BASE_TAG:-local/debian-python:bookworm}"
SUITE="${SUITE:-bookworm}"

if docker image inspect "$BASE_TAG" >/dev/null 2>&1 && [[ "${FORCE:-0}" != 1 ]]; then
  echo "base image $BASE_TAG already present (FORCE=1 rebuilds)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap not installed (apt-get install debootstrap)" >&2; exit 2; }

if [[ -z "${MIRROR:-}" ]]; then
  # First non-security http(s) URI from apt's sources (deb822 "URIs:" or one-line "deb URI suite").
  MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]+' | grep -v security | head -n1 || true)
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

ROOTFS=$(mktemp -d /tmp/dwlrec-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap $SUITE from $MIRROR into $ROOTFS"
# EXTRA_PACKAGES (comma-separated Debian packages) for derived bases, e.g. the Spark image's:
#   BASE_TAG=local/debian-python-java:bookworm EXTRA_PACKAGES=openjdk-17-jre-headless,procps,tini
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates${EXTRA_PACKAGES:+,$EXTRA_PACKAGES} \
  "$SUITE" "$ROOTFS" "$MIRROR"
# Slim the image: apt lists and caches are not needed at run time.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' - "$BASE_TAG"
docker run --rm --network none "$BASE_TAG" python3 --version
echo "built $BASE_TAG"
