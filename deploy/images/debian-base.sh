#!/usr/bin/env bash
# A Python base image made from Debian's own packages, for machines that reach a Debian
# mirror but no image registry. mmdebstrap builds a minimal bookworm tree with Python 3.11,
# pip and the CA certificates (the machine's extra CAs in /usr/local/share/ca-certificates
# included, or pip inside builds cannot verify its index); the container engine imports it.
#   deploy/images/debian-base.sh [IMAGE]     # default cloister/python-base:bookworm
#   deploy/images/build.sh --base cloister/python-base:bookworm
# Environment: CONTAINER_ENGINE (podman or docker; detected), BASE_CACHE (a directory that
# keeps the tarball, keyed by the day, the apt sources, the CAs and this script, so a rerun
# imports it again without downloading: default ${XDG_CACHE_HOME:-~/.cache}/cloister-base).
# Needs mmdebstrap (apt-get install mmdebstrap) and root or a subuid range (mmdebstrap's modes).
set -euo pipefail
image="${1:-cloister/python-base:bookworm}"
engine="${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}"
[ -n "$engine" ] || { echo "debian-base.sh: neither podman nor docker found; set CONTAINER_ENGINE" >&2; exit 2; }
command -v mmdebstrap >/dev/null || { echo "debian-base.sh: mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 2; }
cache="${BASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloister-base}"
packages="python3,python3-pip,python3-venv,ca-certificates,passwd"

shopt -s nullglob
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && sources+=("$f")
done
cas=(/usr/local/share/ca-certificates/*.crt)
key="$( { date -u +%F; echo "$packages"; cat "$0"; cat "${sources[@]}" "${cas[@]}"; } \
        | sha256sum | cut -c1-16)"
tarball="$cache/bookworm-python-$key.tar"

if [ ! -s "$tarball" ]; then
  mkdir -p "$cache"
  part="$(mktemp "$cache/.part.XXXXXX")"
  trap 'rm -f "$part"' EXIT
  hooks=()
  for ca in "${cas[@]}"; do
    hooks+=(--customize-hook="upload $ca /usr/local/share/ca-certificates/$(basename "$ca")")
  done
  # the machine's apt sources (mirror, snapshot, security) become the image's too
  mmdebstrap --variant=minbase --include="$packages" --format=tar --skip=output/dev \
    "${hooks[@]}" \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$part" "${sources[@]}" >&2
  mv "$part" "$tarball"
  trap - EXIT
fi
"$engine" import \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  "$tarball" "$image" >/dev/null
echo "$image (from $tarball)"
