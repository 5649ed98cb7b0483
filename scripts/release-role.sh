#!/usr/bin/env bash
# One role's release, the same on a workstation as in
# .github/workflows/release.yml: build labbake, check that labbake.lock pins
# every input, bake the role from the lock, boot-test it, push it to REPO as
# an OCI artifact (REPO:TAG) and as a KubeVirt containerDisk (REPO:TAG-disk),
# and list the files to attach to the release.
#
#   scripts/release-role.sh ROLE REPO TAG
#   e.g. scripts/release-role.sh master ghcr.io/labbake/labbake-master v1.2.0
#
# Registry credentials are not this script's: log in first (docker login or
# skopeo login; labbake reads ~/.docker/config.json and containers' auth.json).
#
# Environment:
#   OUT                    output dir, relative to the repository root
#                          (default: output, where make lab bakes)
#   LABBAKE_FLAGS          global flags for every labbake command, split on
#                          blanks, e.g. "--values values/from-source.yaml" or
#                          "--mirror https://dl.k8s.io=https://mirror.internal/k8s"
#   LABBAKE_PUBLISH_FLAGS  flags for the two publish commands only, e.g.
#                          "--tls-verify=false" for a local test registry
#
# Prints the release assets, one path a line, and writes them to
# OUT/ROLE.release-assets: ROLE.qcow2, ROLE.manifest.json, ROLE.spdx.json and
# ROLE.SHA256SUMS (the lines of OUT/SHA256SUMS for those files, checked).
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 ROLE REPO TAG" >&2
  exit 2
fi
role=$1 repo=$2 tag=$3
cd "$(dirname "$0")/.."
out=$(realpath -m -- "${OUT:-output}")
read -r -a flags <<<"${LABBAKE_FLAGS:-}"
read -r -a publish_flags <<<"${LABBAKE_PUBLISH_FLAGS:-}"

# (The flags are not echoed: LABBAKE_PUBLISH_FLAGS may hold --creds.)
run() {
  echo "release-role: labbake $1 $2" >&2
  bin/labbake --out "$out" "${flags[@]}" "$@"
}

rm -f "$out/$role.release-assets" "$out/$role.SHA256SUMS"
make deps build
# labbake lock has no --frozen; plan --frozen refuses, before the bake, any
# input labbake.lock does not pin (or pins otherwise).
run plan "$role" --frozen
run build "$role" --frozen
run test "$role"

# Before anything is pushed: this role's checksums (sha256sum's format)
# checked against the files, and every asset there.
sums=$role.SHA256SUMS
(
  cd "$out"
  lines=$(awk -v role="$role" '{ name = $2; sub(/^\*/, "", name) }
    name == role ".qcow2" || name == role ".manifest.json" || name == role ".spdx.json"' SHA256SUMS)
  if ! grep -q '\.qcow2$' <<<"$lines"; then
    echo "release-role: $out/SHA256SUMS does not list $role.qcow2" >&2
    exit 1
  fi
  sha256sum --check --strict --quiet <<<"$lines"
  printf '%s\n' "$lines" >"$sums"
)

assets=()
missing=()
for f in "$role.qcow2" "$role.manifest.json" "$role.spdx.json" "$sums"; do
  if [ -f "$out/$f" ]; then assets+=("$out/$f"); else missing+=("$out/$f"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "release-role: missing: ${missing[*]}" >&2
  exit 1
fi
run publish "$role" --to "$repo:$tag" --format artifact "${publish_flags[@]}"
run publish "$role" --to "$repo:$tag-disk" --format containerdisk "${publish_flags[@]}"
printf '%s\n' "${assets[@]}" >"$out/$role.release-assets"
printf '%s\n' "${assets[@]}"
