#!/usr/bin/env bash
# Build helm-render offline from Debian's Go packages (golang-go,
# golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev) in GOPATH mode:
#   deploy/tools/helm-render/build.sh OUT_BINARY
# GOPATH mode resolves sprig's /v3 import only for code inside a GOPATH, so the
# sources are copied into a throwaway one next to the Debian tree.
set -euo pipefail
out="$(realpath -m "${1:?usage: build.sh OUT_BINARY}")"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/helm-render"
cp "$here/main.go" "$here/go.mod" "$work/src/helm-render/"
cd "$work/src/helm-render"
GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOCACHE="${GOCACHE:-$work/cache}" \
  GOFLAGS= go build -o "$out" .
