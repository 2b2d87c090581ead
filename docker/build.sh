#!/usr/bin/env bash
# Build the dwlrec container images.
#
#   docker/build.sh wheelhouse       # pip wheel every dependency into ./wheelhouse (host, needs the index)
#   docker/build.sh cpu              # CPU image   -> $DWLREC_IMAGE      (default dwlrec:latest)
#   docker/build.sh wheelhouse-cuda  # the same with the CUDA torch into ./wheelhouse-cuda (~2.7 GB)
#   docker/build.sh cuda             # CUDA image  -> $DWLREC_CUDA_IMAGE (default dwlrec-cuda:latest)
#   docker/build.sh spark            # Spark image -> $DWLREC_SPARK_IMAGE (default dwlrec-spark:latest):
#                                    # the CPU image on $SPARK_BASE_IMAGE (Java 17) + pyspark + entrypoint
#   docker/build.sh all              # wheelhouses (if empty) + cpu + cuda
#
# Offline builds: when ./wheelhouse holds wheels, the Dockerfiles install only from it
# (pip --no-index) and the build runs with --network none. Use this where the container cannot
# reach a package index (TLS interception, air-gapped CI). With an empty wheelhouse the build
# installs from the index inside the container.
#
# Environment: BASE_IMAGE (CPU base, default python:3.11-slim; docker/bootstrap-base.sh builds
# local/debian-python:bookworm when no registry is reachable), CUDA_BASE_IMAGE (the CUDA image's
# base, default $BASE_IMAGE: the same Debian/Python base, no CUDA toolkit; torch's wheels bring
# the CUDA libraries), TORCH_SPEC (torch for the CPU image, default torch==2.13.0),
# CUDA_TORCH_SPEC (torch for the CUDA image, default torch==2.11.0, i.e. 2.11.0+cu130, what the
# GPU tests ran with), PYTHON (host python used for the wheelhouses, default .venv/bin/python or
# python3; its version must be the base's, cp311), PUSH=1 pushes both tags after building (use
# registry-qualified names in DWLREC_IMAGE...).
#
# The CUDA image's build context is a tar of the files it needs plus ./wheelhouse-cuda, streamed
# to `docker build -`: the repository's .dockerignore (a whitelist) keeps wheelhouse-cuda/ out of
# the CPU image's context, so the CPU build never uploads the CUDA wheels.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DWLREC_IMAGE="${DWLREC_IMAGE:-dwlrec:latest}"
DWLREC_CUDA_IMAGE="${DWLREC_CUDA_IMAGE:-dwlrec-cuda:latest}"
BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
CUDA_BASE_IMAGE="${CUDA_BASE_IMAGE:-$BASE_IMAGE}"
CUDA_TORCH_SPEC="${CUDA_TORCH_SPEC:-torch==2.11.0}"
CUDA_WHEELHOUSE=wheelhouse-cuda
DWLREC_SPARK_IMAGE="${DWLREC_SPARK_IMAGE:-dwlrec-spark:latest}"
# a base with Python 3.11 (venv) and Java 17 (and tini, procps): offline, BASE_TAG=local/debian-python-java:bookworm
# EXTRA_PACKAGES=openjdk-17-jre-headless,procps,tini docker/bootstrap-base.sh; with a registry, any
# image FROM python:3.11-slim-bookworm that apt-installs openjdk-17-jre-headless procps tini
SPARK_BASE_IMAGE="${SPARK_BASE_IMAGE:-local/debian-python-java:bookworm}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

have_wheels() { compgen -G "${1:-wheelhouse}/*.whl" >/dev/null; }

# The project's runtime requirements, read from pyproject.toml (one source of truth).
requirements() {
  "$PYTHON" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))'
}

build_wheelhouse() {  # [dir torch-spec]
  local dir=${1:-wheelhouse} torch=${2:-$TORCH_SPEC}
  mkdir -p "$dir"
  local reqs
  reqs=$(mktemp)
  requirements >"$reqs"
  echo "== $dir: $torch + $(wc -l <"$reqs") requirements from pyproject.toml"
  # Let pip resolve (not --no-deps): constraints such as mpmath<1.4 for torch only come out of
  # a real resolve. setuptools/wheel are the project's build backend.
  "$PYTHON" -m pip wheel --wheel-dir "$dir" "$torch" -r "$reqs" "setuptools>=68" wheel
  rm -f "$reqs"
  du -sh "$dir"
}

build_image() {  # dockerfile tag base [more docker build arguments]
  local dockerfile=$1 tag=$2 base=$3 network=()
  shift 3
  mkdir -p wheelhouse  # the Dockerfiles COPY it, empty or not
  if have_wheels; then network=(--network none); fi
  echo "== docker build -f $dockerfile -t $tag (BASE_IMAGE=$base${network:+, offline}) $*"
  docker build "${network[@]}" -f "$dockerfile" --build-arg BASE_IMAGE="$base" \
    --build-arg TORCH_SPEC="$TORCH_SPEC" "$@" -t "$tag" .
  if [[ "${PUSH:-0}" == 1 ]]; then docker push "$tag"; fi
}

extra_requirements() {  # the pins of pyproject.toml's optional-dependency group $1
  "$PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"][sys.argv[1]]))' "$1"
}

build_spark_image() {  # tag base
  local tag=$1 base=$2 reqs network=()
  if have_wheels; then  # an offline build: the spark extra's wheels join the wheelhouse
    reqs=$(mktemp)
    extra_requirements spark >"$reqs"
    "$PYTHON" -m pip wheel --wheel-dir wheelhouse -r "$reqs"
    rm -f "$reqs"
    network=(--network none)
  fi
  PUSH=0 build_image docker/Dockerfile "${tag}-base" "$base" --build-arg EXTRAS=spark
  echo "== docker build -f docker/Dockerfile.spark -t $tag"
  docker build "${network[@]}" -f docker/Dockerfile.spark --build-arg DWLREC_IMAGE="${tag}-base" \
    -t "$tag" .
  if [[ "${PUSH:-0}" == 1 ]]; then docker push "$tag"; fi
}

build_cuda_image() {  # tag base
  local tag=$1 base=$2 network=() files=(pyproject.toml components pipelines docker/Dockerfile.cuda)
  mkdir -p "$CUDA_WHEELHOUSE"  # the Dockerfile COPYs it, empty or not
  if have_wheels "$CUDA_WHEELHOUSE"; then network=(--network none); fi
  for f in README.md LICENSE; do if [[ -e $f ]]; then files+=("$f"); fi; done
  echo "== docker build -f docker/Dockerfile.cuda -t $tag (BASE_IMAGE=$base, $CUDA_TORCH_SPEC," \
    "context: ${files[*]} $CUDA_WHEELHOUSE ($(du -sh "$CUDA_WHEELHOUSE" | cut -f1))${network:+, offline})"
  tar -c --exclude=__pycache__ --exclude='*.pyc' "${files[@]}" "$CUDA_WHEELHOUSE" \
    | docker build "${network[@]}" --force-rm -f docker/Dockerfile.cuda --build-arg BASE_IMAGE="$base" \
      --build-arg TORCH_SPEC="$CUDA_TORCH_SPEC" --build-arg WHEELHOUSE="$CUDA_WHEELHOUSE" -t "$tag" -
  if [[ "${PUSH:-0}" == 1 ]]; then docker push "$tag"; fi
}

case "${1:-all}" in
  wheelhouse) build_wheelhouse ;;
  cpu) build_image docker/Dockerfile "$DWLREC_IMAGE" "$BASE_IMAGE" ;;
  wheelhouse-cuda) build_wheelhouse "$CUDA_WHEELHOUSE" "$CUDA_TORCH_SPEC" ;;
  cuda) build_cuda_image "$DWLREC_CUDA_IMAGE" "$CUDA_BASE_IMAGE" ;;
  spark) build_spark_image "$DWLREC_SPARK_IMAGE" "$SPARK_BASE_IMAGE" ;;
  all)
    have_wheels || build_wheelhouse
    have_wheels "$CUDA_WHEELHOUSE" || build_wheelhouse "$CUDA_WHEELHOUSE" "$CUDA_TORCH_SPEC"
    build_image docker/Dockerfile "$DWLREC_IMAGE" "$BASE_IMAGE"
    build_cuda_image "$DWLREC_CUDA_IMAGE" "$CUDA_BASE_IMAGE"
    ;;
  *) echo "usage: docker/build.sh [wheelhouse|cpu|wheelhouse-cuda|cuda|spark|all]" >&2; exit 2 ;;
esac
