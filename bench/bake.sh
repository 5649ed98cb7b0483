#!/usr/bin/env bash
# Bakes the same Debian root filesystem (~15k entries, made once with
# mmdebstrap) with labbake and with the plain tool pipeline (tar -x, sgdisk,
# mkfs.vfat, mke2fs -d, qemu-img convert, then fsync of the image as
# labbake does before renaming it into place), in one run, uncompressed and
# compressed, and prints the time of each and their ratio.
#
#   bench/bake.sh [BASE_TAR]      (default: bench/out/rootfs.tar, made by make)
#
# The plain pipeline extracts the tarball as root to keep owners and device
# nodes, so run this as root. Each side runs RUNS times (default 3),
# alternating, and the best time of each is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
base=${1:-bench/out/rootfs.tar}
runs=${RUNS:-3}
size_mib=4096
[ -f "$base" ] || make "$base"
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (the plain pipeline extracts the tarball with owners and devices)" >&2; exit 1; }
make build

work=$(mktemp -d "${TMPDIR:-/var/tmp}/labbake-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
lab=$work/lab
mkdir -p "$lab/recipes"
ln -s "$(realpath "$base")" "$lab/rootfs.tar"
printf 'name: bench\nnodes: [{name: b, role: bench, ip: 172.18.0.10}]\n' > "$lab/lab.yaml"
printf 'base: {tar: rootfs.tar}\ndisk: {size: %dMiB}\n' "$size_mib" > "$lab/recipes/bench.yaml"
cat "$base" > /dev/null # warm the page cache for both

now() { date +%s.%N; }
# timed NAME CMD...: wall time of one run in seconds, after flushing what
# earlier runs left dirty so that their writeback is not billed to this one.
timed() {
  local name=$1; shift
  sync; cat "$base" > /dev/null
  local t0 t1
  t0=$(now); "$@" >/dev/null 2>"$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }; t1=$(now)
  awk "BEGIN{print $t1 - $t0}"
}
min() { awk "BEGIN{print ($1 == \"\" || $2 < $1) ? $2 : $1}"; }

labbake_build() { # $1: extra flag
  rm -rf "$work/out" "$work/cache"
  bin/labbake -C "$lab" --out "$work/out" --cache "$work/cache" build bench $1
}

plain_build() { # $1: extra qemu-img flag
  local d=$work/plain
  rm -rf "$d"; mkdir -p "$d/root"
  tar -xpf "$base" -C "$d/root" --numeric-owner --xattrs --xattrs-include='*'
  truncate -s ${size_mib}M "$d/disk.raw"
  sgdisk -q -n1:2048:+1M -t1:ef02 -n2:0:+200M -t2:ef00 -n3:0:-1M -t3:8304 "$d/disk.raw"
  mkfs.vfat -q -F 32 -s 1 --offset=$((2 * 2048)) "$d/disk.raw" $((200 * 1024)) >/dev/null
  local root_off=$((202 * 1024 * 1024)) root_blocks=$(((size_mib - 203) * 256))
  E2FSPROGS_FAKE_TIME=1735689600 mke2fs -q -F -t ext4 -E offset=$root_off -d "$d/root" "$d/disk.raw" $root_blocks
  qemu-img convert $1 -O qcow2 "$d/disk.raw" "$d/disk.qcow2"
  sync "$d/disk.qcow2" # labbake fsyncs its image before renaming it into place
  ls -l "$d/disk.qcow2" | awk '{print $5}' > "$work/plain.size"
}

entries=$(tar -tf "$base" | wc -l)
echo "bench: $base: $entries entries, $(du -h --apparent-size "$base" | cut -f1); disk ${size_mib} MiB; best of $runs"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
printf '%-14s %10s %10s %8s %12s %12s\n' case labbake plain ratio labbake-size plain-size
for mode in plain compressed; do
  lflag=""; pflag=""
  [ $mode = compressed ] && { lflag="--compress"; pflag="-c"; }
  lt=""; pt=""
  for _ in $(seq "$runs"); do # alternate, so drift hits both alike
    lt=$(min "${lt:-1e9}" "$(timed labbake labbake_build "$lflag")")
    pt=$(min "${pt:-1e9}" "$(timed plain plain_build "$pflag")")
  done
  lsize=$(stat -c %s "$work/out/bench.qcow2")
  psize=$(cat "$work/plain.size")
  printf '%-14s %9.2fs %9.2fs %7.2fx %12d %12d\n' "$mode" "$lt" "$pt" "$(awk "BEGIN{print $lt / $pt}")" "$lsize" "$psize"
done
