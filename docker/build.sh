#!/usr/bin/env bash
# Build the dwlrec container images.
#
#   docker/build.sh wheelhouse   # pip wheel every dependency into ./wheelhouse (host, needs the index)
#   docker/build.sh cpu          # CPU image   -> $DWLREC_IMAGE      (default dwlrec:latest)
#   docker/build.sh cuda         # CUDA image  -> $DWLREC_CUDA_IMAGE (default dwlrec-cuda:latest)
#   docker/build.sh all          # wheelhouse (if empty) + cpu + cuda
#
# Offline builds: when ./wheelhouse holds wheels, the Dockerfiles install only from it
# (pip --no-index) and the build runs with --network none. Use this where the container cannot
# reach a package index (TLS interception, air-gapped CI). With an empty wheelhouse the build
# installs from the index inside the container.
#
# Environment: BASE_IMAGE (CPU base, default python:3.11-slim; docker/bootstrap-base.sh builds
# local/debian-python:bookworm when no registry is reachable), CUDA_BASE_IMAGE (default
# pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime), TORCH_SPEC (torch for the CPU image, default
# torch==2.13.0), PYTHON (host python used for the wheelhouse, default .venv/bin/python or python3),
# PUSH=1 pushes both tags after building (use registry-qualified names in DWLREC_IMAGE...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DWLREC_IMAGE="${DWLREC_IMAGE:-dwlrec:latest}"
DWLREC_CUDA_IMAGE="${DWLREC_CUDA_IMAGE:-dwlrec-cuda:latest}"
BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim}"
CUDA_BASE_IMAGE="${CUDA_BASE_IMAGE:-pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

have_wheels() { compgen -G "wheelhouse/*.whl" >/dev/null; }

# The project's runtime requirements, read from pyproject.toml (one source of truth).
requirements() {
  "$PYTHON" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))'
}

build_wheelhouse() {
  mkdir -p wheelhouse
  local reqs
  reqs=$(mktemp)
  requirements >"$reqs"
  echo "== wheelhouse: $TORCH_SPEC + $(wc -l <"$reqs") requirements from pyproject.toml"
  # Let pip resolve (not --no-deps): constraints such as mpmath<1.4 for torch only come out of
  # a real resolve. setuptools/wheel are the project's build backend.
  "$PYTHON" -m pip wheel --wheel-dir wheelhouse "$TORCH_SPEC" -r "$reqs" "setuptools>=68" wheel
  rm -f "$reqs"
  du -sh wheelhouse
}

build_image() {  # dockerfile tag base
  local dockerfile=$1 tag=$2 base=$3 network=()
  mkdir -p wheelhouse  # the Dockerfiles COPY it, empty or not
  if have_wheels; then network=(--network none); fi
  echo "== docker build -f $dockerfile -t $tag (BASE_IMAGE=$base${network:+, offline})"
  docker build "${network[@]}" -f "$dockerfile" --build-arg BASE_IMAGE="$base" \
    --build-arg TORCH_SPEC="$TORCH_SPEC" -t "$tag" .
  if [[ "${PUSH:-0}" == 1 ]]; then docker push "$tag"; fi
}

case "${1:-all}" in
  wheelhouse) build_wheelhouse ;;
  cpu) build_image docker/Dockerfile "$DWLREC_IMAGE" "$BASE_IMAGE" ;;
  cuda) build_image docker/Dockerfile.cuda "$DWLREC_CUDA_IMAGE" "$CUDA_BASE_IMAGE" ;;
  all)
    have_wheels || build_wheelhouse
    build_image docker/Dockerfile "$DWLREC_IMAGE" "$BASE_IMAGE"
    build_image docker/Dockerfile.cuda "$DWLREC_CUDA_IMAGE" "$CUDA_BASE_IMAGE"
    ;;
  *) echo "usage: docker/build.sh [wheelhouse|cpu|cuda|all]" >&2; exit 2 ;;
esac
