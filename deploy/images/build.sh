#!/usr/bin/env bash
# Build the cloister images and the sealed patient API image with Docker or podman; export
# the seal output (fspf key, tag) to deploy/compose/secrets/api-seal.txt, never into an image.
# Usage (from anywhere):
#   deploy/images/build.sh [--base PYTHON_IMAGE] [API_IMAGE]   # default cloister/patients-api:0.1.0
# Environment: CONTAINER_ENGINE (docker or podman; default: docker if installed, else podman),
# PYTHON_IMAGE (the Python base, as --base; default python:3.11.9-slim-bookworm; without a
# registry: deploy/images/debian-base.sh makes one from Debian's packages), TAG (0.1.0),
# PREFIX (cloister), APP (examples/patients), SECRETS (deploy/compose/secrets).
#
# The secrets directory is 0700 (only the builder gets in); api-seal.txt inside it is 0644,
# because Compose bind-mounts a file secret with its owner and mode, and the init service
# that reads it runs as uid 10001, not as the builder.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
base="${PYTHON_IMAGE:-python:3.11.9-slim-bookworm}"
if [ "${1:-}" = "--base" ]; then
  base="${2:?--base needs an image}"
  shift 2
fi
tag="${TAG:-0.1.0}"
prefix="${PREFIX:-cloister}"
api_image="${1:-$prefix/patients-api:$tag}"
app="${APP:-$root/examples/patients}"
secrets="${SECRETS:-$root/deploy/compose/secrets}"
engine="${CONTAINER_ENGINE:-$(command -v docker || command -v podman || true)}"
[ -n "$engine" ] || { echo "build.sh: neither docker nor podman found; set CONTAINER_ENGINE" >&2; exit 2; }

build() {  # build DOCKERFILE CONTEXT BUILD-ARGS...
  local file="$1" context="$2"
  shift 2
  case "$(basename "$engine")" in
    # podman: Docker's image format (OCI drops HEALTHCHECK) and the Dockerfile's own ignore file
    podman*) "$engine" build --format docker --ignorefile "$file.dockerignore" -f "$file" "$@" "$context" ;;
    *) DOCKER_BUILDKIT=1 "$engine" build -f "$file" "$@" "$context" ;;
  esac
}

build "$root/deploy/images/runtime/Dockerfile" "$root" \
  --build-arg "PYTHON_IMAGE=$base" -t "$prefix/runtime:$tag"
for part in cas las redis; do
  build "$root/deploy/images/$part/Dockerfile" "$root/deploy/images/$part" \
    --build-arg "RUNTIME_IMAGE=$prefix/runtime:$tag" -t "$prefix/$part:$tag"
done
build "$root/deploy/images/api/Dockerfile" "$app" --build-arg "RUNTIME_IMAGE=$prefix/runtime:$tag" \
  --target api -t "$api_image"

umask 077
mkdir -p "$secrets"
chmod 0700 "$secrets"
out="$(mktemp -d "$secrets/.seal.XXXXXX")"
trap 'rm -rf "$out"' EXIT
# same inputs as above: the cached `seal` stage is reused, so this is that build's key
build "$root/deploy/images/api/Dockerfile" "$app" --build-arg "RUNTIME_IMAGE=$prefix/runtime:$tag" \
  --target seal-output --output "type=local,dest=$out"
want="$(cat "$out/fspf.sha256")"
have="$("$engine" run --rm --entrypoint sha256sum "$api_image" /fspf/encrypted-files/fspf.pb | cut -d' ' -f1)"
if [ "$want" != "$have" ]; then
  echo "build.sh: the exported seal output does not describe $api_image (build cache lost?);" \
       "rebuild with --no-cache for both steps" >&2
  exit 1
fi
install -m 0644 "$out/seal.txt" "$secrets/api-seal.txt"
echo "built $prefix/{runtime,cas,las,redis}:$tag and $api_image with $(basename "$engine") from $base"
echo "fspf key and tag: $secrets/api-seal.txt (in a 0700 directory; it goes to the CAS in the policy, nowhere else)"
