#!/usr/bin/env bash
# Build the cloister images and the sealed patient API image; export the seal
# output (fspf key, tag) to deploy/compose/secrets/api-seal.txt (0600), never
# into an image. Usage (from anywhere):
#   deploy/images/build.sh [API_IMAGE]        # default cloister/patients-api:0.1.0
# Environment: TAG (default 0.1.0), PREFIX (default cloister), APP (default examples/patients).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${TAG:-0.1.0}"
prefix="${PREFIX:-cloister}"
api_image="${1:-$prefix/patients-api:$tag}"
app="${APP:-$root/examples/patients}"
secrets="$root/deploy/compose/secrets"
export DOCKER_BUILDKIT=1

docker build -f "$root/deploy/images/runtime/Dockerfile" -t "$prefix/runtime:$tag" "$root"
for part in cas las redis; do
  docker build -f "$root/deploy/images/$part/Dockerfile" \
    --build-arg "RUNTIME_IMAGE=$prefix/runtime:$tag" -t "$prefix/$part:$tag" "$root/deploy/images/$part"
done
docker build -f "$root/deploy/images/api/Dockerfile" --build-arg "RUNTIME_IMAGE=$prefix/runtime:$tag" \
  --target api -t "$api_image" "$app"

umask 077
mkdir -p "$secrets"
out="$(mktemp -d "$secrets/.seal.XXXXXX")"
trap 'rm -rf "$out"' EXIT
# same inputs as above: the cached `seal` stage is reused, so this is that build's key
docker build -f "$root/deploy/images/api/Dockerfile" --build-arg "RUNTIME_IMAGE=$prefix/runtime:$tag" \
  --target seal-output --output "type=local,dest=$out" "$app"
want="$(cat "$out/fspf.sha256")"
have="$(docker run --rm --entrypoint sha256sum "$api_image" /fspf/encrypted-files/fspf.pb | cut -d' ' -f1)"
if [ "$want" != "$have" ]; then
  echo "build.sh: the exported seal output does not describe $api_image (build cache lost?);" \
       "rebuild with --no-cache for both steps" >&2
  exit 1
fi
install -m 0600 "$out/seal.txt" "$secrets/api-seal.txt"
echo "built $prefix/{runtime,cas,las,redis}:$tag and $api_image"
echo "fspf key and tag: $secrets/api-seal.txt (mode 0600; it goes to the CAS in the policy, nowhere else)"
