#!/usr/bin/env bash
# Bakes the same content as bench/bake.sh (bench/out/bootable.tar: Debian
# bookworm minbase + systemd-sysv, udev, linux-image-amd64, systemd-boot-efi,
# grub-pc-bin; a 4 GiB disk) with labbake and with the tools people use for
# the job today, and prints for each case the median wall time of RUNS runs
# (default 3; every case once per round, so drift hits them alike), its
# ratio to labbake's cold bake, the image's size and its peak memory:
#
#   labbake cold          empty output dir and cache. The base is a local
#                         tar, read where it lies: the cache holds nothing
#                         for it, so "warm input cache" is trivially true.
#   labbake --compress    the same, with compressed (deflate) clusters.
#   labbake edit          one overlay file's content changed, then a build
#                         with the output dir and cache of the builds before
#                         (two untimed builds first: labbake keeps a
#                         build's stages from the second that asks for them).
#   labbake edit, OUT on btrfs   the same with the output dir on a btrfs (a
#                         loop device in the work dir), whose files share
#                         extents: the blocks the new image has in common
#                         with the one it replaces are cloned, not written.
#   virt-make-fs          libguestfs: an ext4 file system in a qcow2, filled
#                         from the tarball inside its appliance (QEMU; under
#                         TCG where KVM is missing or unusable). A file
#                         system, not a partitioned, bootable disk.
#   mkosi cold            mkosi (Debian's: 14) from deb.debian.org, with an
#                         empty package cache: debootstrap and apt, the same
#                         packages, a gpt_ext4 disk converted to qcow2.
#   mkosi warm            the same with its package cache filled.
#   mkosi -i edit         incremental mode: one mkosi.extra file changed,
#                         then a build on the cached image of the one before.
#   qemu-img zlib, zstd   qemu-img convert -c -O qcow2 of labbake's raw disk
#                         (build --keep-raw), -o compression_type=zlib|zstd.
#
# mkosi 14 mounts its image's partitions through loop devices: a bootable
# image needs the kernel's vfat for the ESP. Where it has none, the mkosi
# cases build the same image without Bootable= (no ESP, no boot loader) and
# say why. Every output is fsynced inside its timing, as labbake fsyncs its
# image. Peak memory is /usr/bin/time's "Maximum resident set size": that of
# the largest single process of the job (labbake, mke2fs, QEMU, dpkg, ...),
# not their sum. labbake's stage times come from its -v log of each run.
#
# With LABBAKE_BENCH_LAB_CACHE naming a labbake cache that holds the shipped
# lab's from-source inputs, it also bakes the lab's master image from it
# (--offline: nothing is fetched or built that the cache does not hold) and
# reports its wall time and peak memory.
#
# The tables go to stdout and into bench/RESULTS.md, between the markers of
# its section "bench/others.sh — ..." (the analysis around them is kept).
#
#   bench/others.sh [BASE_TAR]      (default: bench/out/bootable.tar)
#
# Run it as root (loop devices, nspawn, mounts). The tools are installed
# with apt-get when missing; a tool that cannot run here is skipped with
# the error it gave.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
base=${1:-bench/out/bootable.tar}
runs=${RUNS:-3}
size_mib=4096
mirror=http://deb.debian.org/debian
packages=systemd-sysv,udev,linux-image-amd64,systemd-boot-efi,grub-pc-bin # as the Makefile's mmdebstrap
results=bench/RESULTS.md
heading="## bench/others.sh — labbake against virt-make-fs, mkosi and qemu-img"
[ -f "$base" ] || make "$base"
[ "$(id -u)" -eq 0 ] || { echo "others: run as root (loop devices, systemd-nspawn, mounts)" >&2; exit 1; }

# Tools by package. The libguestfs appliance boots the host's kernel from
# /boot (supermin): linux-image-amd64 when there is none.
declare -A need=([virt-make-fs]=libguestfs-tools [mkosi]=mkosi [systemd-nspawn]=systemd-container
  [debootstrap]=debootstrap [qemu-img]=qemu-utils [debugfs]=e2fsprogs [partx]=util-linux
  [mkfs.btrfs]=btrfs-progs)
missing=$(
  for tool in "${!need[@]}"; do command -v "$tool" >/dev/null 2>&1 || echo "${need[$tool]}"; done
  [ -x /usr/bin/time ] || echo time
  compgen -G '/boot/vmlinuz-*' >/dev/null || echo linux-image-amd64
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || echo debian-archive-keyring
)
missing=$(echo "$missing" | sort -u | xargs)
if [ -n "$missing" ]; then
  echo "others: installing $missing" >&2
  apt-get update -qq || true
  for pkg in $missing; do # one at a time: a package that will not install skips its cases only
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
      echo "others: could not install $pkg" >&2
  done
fi
[ -x /usr/bin/time ] || { echo "others: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
make build

work=$(mktemp -d "${TMPDIR:-/var/tmp}/labbake-others.XXXXXX")
trap 'umount "$work/btrfs" 2>/dev/null || true; rm -rf "$work"' EXIT

# The bench lab of bake.sh, and a copy with one overlay file (edit case).
lab=$work/lab
mkdir -p "$lab/recipes"
# A hard link, or a copy: labbake refuses a symbolic link out of the lab dir.
ln "$(realpath "$base")" "$lab/rootfs.tar" 2>/dev/null || cp "$base" "$lab/rootfs.tar"
printf 'name: bench\nnodes: [{name: b, role: bench, ip: 172.18.0.10}]\n' > "$lab/lab.yaml"
printf 'base: {tar: rootfs.tar}\ndisk: {size: %dMiB}\n' "$size_mib" > "$lab/recipes/bench.yaml"
elab=$work/elab
cp -a "$lab" "$elab"
mkdir -p "$elab/overlays/bench-edit/etc"
printf 'overlays: [bench-edit]\n' >> "$elab/recipes/bench.yaml"
edited=$elab/overlays/bench-edit/etc/bench-edit
echo 0 > "$edited"

now() { date +%s.%N; }
declare -A walls=() rss=() size=() alloc=() skip=() note=()
bt="labbake edit, OUT on btrfs"
cases=("labbake cold" "labbake --compress" "labbake edit" "$bt" "virt-make-fs" "mkosi cold" "mkosi warm"
  "mkosi -i edit" "qemu-img zlib" "qemu-img zstd")
f_of() { echo "$work/$(echo "$1" | tr -c 'a-z0-9\n' _)"; } # f_of CASE: the prefix of its files

# peak FILE CMD...: runs CMD under /usr/bin/time -v, its report into FILE.
peak() { local f=$1; shift; /usr/bin/time -v -o "$f" "$@"; }
maxrss() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; } # KiB

# timed CASE CMD...: one run of CMD, after flushing what earlier runs left
# dirty so that their writeback is not billed to this one. CMD runs in a
# subshell with set -e of its own (behind || bash would ignore set -e in it
# and time a half-done job); it writes its peak memory report to $cur.time.
# Adds the wall time and peak to the case; on failure, returns 1 with the
# output in $cur.err.
timed() {
  local c=$1; shift
  cur=$(f_of "$c")
  sync; cat "$base" > /dev/null
  local t0 t1 rc
  set +e
  t0=$(now); (set -e; "$@") >"$cur.out" 2>"$cur.err"; rc=$?; t1=$(now)
  set -e
  [ $rc -eq 0 ] || return 1
  walls[$c]+=" $(awk "BEGIN{print $t1 - $t0}")"
  [ ! -f "$cur.time" ] || rss[$c]+=" $(maxrss "$cur.time")"
}
# run_case CASE CMD...: timed, unless the case is skipped; a failure skips
# it from then on with its last lines of output.
run_case() {
  local c=$1
  [ -z "${skip[$c]:-}" ] || return 0
  timed "$@" && return 0
  skip[$c]="failed: $(grep -v '^\s*$' "$cur.err" | tail -n 3 | tr '\n' ' ')"
  echo "others: $c ${skip[$c]}" >&2
}
sizes() { # sizes CASE FILE: its size and the bytes it takes on disk
  size[$1]=$(stat -c %s "$2")
  alloc[$1]=$(($(stat -c %b "$2") * $(stat -c %B "$2")))
}
median() { # median "t1 t2 ...": the middle value (mean of the middle two)
  tr ' ' '\n' <<<"$1" | grep . | sort -g |
    awk '{a[NR] = $1} END {if (NR == 0) exit; print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# labbake.
labbake_cold() { # $1: out dir, $@: more build flags
  local out=$1; shift
  rm -rf "$out" "$work/cache"
  peak "$cur.time" bin/labbake -v -C "$lab" --out "$out" --cache "$work/cache" build bench "$@"
}
labbake_edit() { # $1: out dir (default: the edit case's)
  peak "$cur.time" bin/labbake -v -C "$elab" --out "${1:-$work/eout}" --cache "$work/ecache" build bench
}
labbake_edit_btrfs() { labbake_edit "$work/btrfs/eout"; }
digest() { awk -F'\t' 'NR == 1 {print $3}' "$1"; } # the image's sha256 from build's first line

# stages LOG OUT WALL: labbake's stage times (s) from its -v log and its
# first line of output: tree, boot, raw (of which staged, mke2fs, debugfs),
# qcow2, the rest of the bake, and the rest of the wall time (start-up and
# loading the lab before the bake; the work dir's removal, the PKI and the
# seed after it).
stages() {
  awk -v wall="$3" '
    function dur(s,   t, v, u, n) { # a Go duration: 1m2.5s, 480ms, 3.2µs
      t = 0
      while (match(s, /^[0-9.]+[a-zµ]+/)) {
        n = substr(s, 1, RLENGTH); s = substr(s, RLENGTH + 1)
        match(n, /^[0-9.]+/); v = substr(n, 1, RLENGTH); u = substr(n, RLENGTH + 1)
        t += v * (u == "h" ? 3600 : u == "m" ? 60 : u == "s" ? 1 : u == "ms" ? 1e-3 : u == "ns" ? 1e-9 : 1e-6)
      }
      return t
    }
    function took(   i) { for (i = 1; i <= NF; i++) if ($i ~ /^took=/) return dur(substr($i, 6)); return 0 }
    FNR == NR { if (FNR == 1) { split($0, f, "\t"); total = dur(f[5]) } next }
    /msg="tree assembled"/ { tree = took() }
    /msg="boot loaders laid out"/ { boot = took() }
    /msg="tree staged"/ { staged = took() }
    /msg="mke2fs done"/ { mke2fs = took() }
    /msg="debugfs fix-up done"/ { debugfs = took() }
    /msg="raw disk written"/ { raw = took() }
    /msg="qcow2 converted"/ { qcow2 = took() }
    END { printf "%.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n", tree, boot, raw, staged, mke2fs, debugfs, qcow2,
      total - tree - boot - raw - qcow2, wall - total }
  ' "$2" "$1"
}
declare -A stagelog=()
stage_names=(tree boot raw staged mke2fs debugfs qcow2 rest after)
record_stages() { # record_stages CASE: this run's stage times
  local f wall
  f=$(f_of "$1"); wall=$(awk '{print $NF}' <<<"${walls[$1]}")
  stagelog[$1]+="$(stages "$f.err" "$f.out" "$wall")"$'\n'
}

# virt-make-fs: a first run, untimed, builds the supermin appliance (kept
# in /var/tmp/.guestfs-UID) and shows whether QEMU can use KVM here.
export LIBGUESTFS_BACKEND=direct
vmf() { rm -f "$work/vmf.qcow2"; peak "$cur.time" virt-make-fs --format=qcow2 --type=ext4 --size=${size_mib}M "$base" "$work/vmf.qcow2"; sync "$work/vmf.qcow2"; }
vmf_accel="libguestfs's default accelerator (KVM when usable, else TCG)"
if ! command -v virt-make-fs >/dev/null; then
  skip[virt-make-fs]="not installed (libguestfs-tools)"
else
  t0=$(now)
  if ! timed vmf-first vmf; then
    # Without LIBGUESTFS_DEBUG libguestfs keeps QEMU's own words to itself.
    why=$(LIBGUESTFS_DEBUG=1 virt-make-fs --format=qcow2 --type=ext4 --size=${size_mib}M "$base" "$work/vmf-debug.qcow2" 2>&1 |
      grep -m2 '^qemu-system[^:]*: ' | tr '\n' ' ' | sed 's/ $//' || true)
    rm -f "$work/vmf-debug.qcow2"
    why=${why:-$(grep -m1 'error' "$(f_of vmf-first).err")}
    export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
    vmf_accel="TCG (LIBGUESTFS_BACKEND_SETTINGS=force_tcg): with libguestfs's default (KVM, as /dev/kvm is there) QEMU aborted: $why"
    t0=$(now)
    if ! timed vmf-tcg-first vmf; then
      skip[virt-make-fs]="the appliance does not run: $why; under TCG: $(grep -m2 'error' "$(f_of vmf-tcg-first).err" | tr '\n' ' ')"
    fi
  fi
  [ -n "${skip[virt-make-fs]:-}" ] || note[virt-make-fs]="first run (builds the appliance unless cached): $(awk "BEGIN{printf \"%.1f\", $(now) - $t0}") s; $vmf_accel"
fi

# mkosi 14 runs apt and dpkg in systemd-nspawn. Without a system bus,
# nspawn cannot make its scope unit (--nspawn-keep-unit). With /run not a
# tmpfs, nspawn refuses to clean up under /run/systemd/nspawn ("Attempted
# to remove disk file system"): a tmpfs there, in a mount namespace of the
# build's own.
mkosi_flags=()
[ -S /run/dbus/system_bus_socket ] || mkosi_flags+=(--nspawn-keep-unit)
mkosi_wrap=()
if [ "$(stat -f -c %T /run)" != tmpfs ]; then
  mkdir -p /run/systemd/nspawn
  # shellcheck disable=SC2016 # $@ is the inner shell's
  mkosi_wrap=(unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /run/systemd/nspawn && exec "$@"' sh)
fi
mkosi_conf() { # mkosi_conf DIR BOOTABLE
  mkdir -p "$1"
  local esp=""
  [ "$2" = no ] || esp="ESPSize=200M"
  cat > "$1/mkosi.default" <<CONF
[Distribution]
Distribution=debian
Release=bookworm
Mirror=$mirror

[Output]
Format=gpt_ext4
Bootable=$2
QCow2=yes
Output=image.qcow2

[Content]
Packages=$packages

[Partitions]
$esp
RootSize=$((size_mib - 203))M
CONF
}
mkosi_build() { # mkosi_build DIR CACHE [FLAG...]
  local dir=$1 cache=$2; shift 2
  peak "$cur.time" "${mkosi_wrap[@]}" mkosi "${mkosi_flags[@]}" -C "$dir" --workspace-dir="$work" --cache="$cache" -f "$@" build
  sync "$dir/image.qcow2"
}
mkosi_cold() { rm -rf "$work/mk-cold-cache"; mkdir -p "$work/mk-cold-cache"; mkosi_build "$work/mk-cold" "$work/mk-cold-cache"; }
mkosi_fetched() { # what a cold build downloaded into its package cache
  find "$work/mk-cold-cache" -name '*.deb' -printf '%s\n' | awk '{n++; s += $1} END {printf "%d packages, %.0f MiB", n, s / 1048576}'
}
mkosi_warm() { mkosi_build "$work/mk-warm" "$work/mk-warm-cache"; }
mkosi_edit() { mkosi_build "$work/mk-edit" "$work/mk-warm-cache" -i; }
mkosi_boot=yes
if ! command -v mkosi >/dev/null; then
  for c in "mkosi cold" "mkosi warm" "mkosi -i edit"; do skip[$c]="not installed (mkosi)"; done
else
  # A first build, untimed, fills the warm package cache; bootable first.
  mkdir -p "$work/mk-warm-cache"
  mkosi_conf "$work/mk-warm" yes
  if ! timed mkosi-first mkosi_warm; then
    boot_err=$(grep -m1 -E "unknown filesystem type|^‣ Error|Error:" "$(f_of mkosi-first).err" || tail -n 1 "$(f_of mkosi-first).err")
    mkosi_boot=no
    mkosi_conf "$work/mk-warm" no
    if ! timed mkosi-first mkosi_warm; then
      for c in "mkosi cold" "mkosi warm" "mkosi -i edit"; do
        skip[$c]="failed: $(grep -m1 -E "^‣ Error|Error:" "$(f_of mkosi-first).err" || tail -n 1 "$(f_of mkosi-first).err")"
      done
    fi
  fi
  mkosi_conf "$work/mk-cold" $mkosi_boot
  mkosi_conf "$work/mk-edit" $mkosi_boot
  mkdir -p "$work/mk-edit/mkosi.extra/etc"
  echo 0 > "$work/mk-edit/mkosi.extra/etc/bench-edit"
  if [ -z "${skip[mkosi warm]:-}" ]; then # the incremental cache image, once
    t0=$(now)
    timed mkosi-edit-first mkosi_edit || skip["mkosi -i edit"]="failed: $(grep -m1 -E "^‣ Error|Error:" "$(f_of mkosi-edit-first).err" || true)"
    note["mkosi -i edit"]="first -i build (the cache image, then the image): $(awk "BEGIN{printf \"%.1f\", $(now) - $t0}") s; then each edit copies the cached image, mounts it, copies mkosi.extra in, trims, converts"
  fi
  if [ $mkosi_boot = no ]; then
    note["mkosi warm"]="not bootable here (Bootable=no: no ESP, no boot loader), as Bootable=yes failed: ${boot_err%.}"
  fi
fi
# mkosi_check: the -i image holds the edited file (once, untimed).
mkosi_check() {
  local img=$work/mk-edit/image.qcow2 raw=$work/mk-check.raw start got
  qemu-img convert -O raw "$img" "$raw"
  start=$(partx -g -b -o START,SIZE "$raw" | sort -k2 -n | tail -n 1 | awk '{print $1}')
  got=$(debugfs -R 'cat /etc/bench-edit' "$raw?offset=$((start * 512))" 2>/dev/null)
  rm -f "$raw"
  [ "$got" = "$1" ] || { echo "others: mkosi -i image: /etc/bench-edit is '$got', not '$1'" >&2; return 1; }
}

# labbake: a first cold build, untimed, under /usr/bin/time -v, keeps the
# raw disk for qemu-img; then the edit case's first two builds: labbake
# keeps a build's stages (the base's tree, the lower root file system)
# from the second build that asks for them, so the timed edits measure a
# workspace that has built before, as mkosi -i's first build does for its
# edits.
cur=$(f_of labbake-first)
peak "$cur.time" bin/labbake -v -C "$lab" --out "$work/raw" --cache "$work/rcache" build bench --keep-raw >"$cur.out" 2>"$cur.err" ||
  { cat "$cur.err" >&2; exit 1; }
first_rss=$(maxrss "$cur.time")
rm -rf "$work/rcache"
cur=$(f_of labbake-edit-first)
for k in 1 2; do
  echo "first $k" > "$edited"
  peak "$cur.time" bin/labbake -v -C "$elab" --out "$work/eout" --cache "$work/ecache" build bench >"$cur.out" 2>"$cur.err" ||
    { cat "$cur.err" >&2; exit 1; }
done
last=$(digest "$cur.out")
# The edit case with OUT on a file system that shares extents (a btrfs on
# a loop device, in the work dir): labbake clones the blocks the new image
# has in common with the one it replaces. Its first build, untimed, makes
# the image and its block map.
truncate -s 4G "$work/btrfs.img"
mkdir -p "$work/btrfs"
if ! out=$(mkfs.btrfs -q -f "$work/btrfs.img" 2>&1 && mount -o loop "$work/btrfs.img" "$work/btrfs" 2>&1); then
  skip[$bt]="no btrfs here: $(echo "$out" | tail -n 1)"
elif ! labbake_edit_btrfs >"$cur.out" 2>"$cur.err"; then
  skip[$bt]="failed: $(tail -n 3 "$cur.err" | tr '\n' ' ')"
fi
qimg() { # qimg TYPE
  rm -f "$work/q-$1.qcow2"
  peak "$cur.time" qemu-img convert -c -O qcow2 -o compression_type="$1" "$work/raw/bench.raw" "$work/q-$1.qcow2"
  sync "$work/q-$1.qcow2"
}

entries=$(tar -tf "$base" | wc -l)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "others: $base: $entries entries, $(du -h --apparent-size "$base" | cut -f1); disk ${size_mib} MiB; median of $runs"
for i in $(seq "$runs"); do
  echo "others: round $i of $runs" >&2
  timed "labbake cold" labbake_cold "$work/out" || { cat "$cur.err" >&2; exit 1; }
  record_stages "labbake cold"
  timed "labbake --compress" labbake_cold "$work/cout" --compress || { cat "$cur.err" >&2; exit 1; }
  echo "$i" > "$edited"
  timed "labbake edit" labbake_edit || { cat "$cur.err" >&2; exit 1; }
  record_stages "labbake edit"
  d=$(digest "$(f_of "labbake edit").out")
  [ "$d" != "$last" ] || { echo "others: the edited build's image did not change ($d)" >&2; exit 1; }
  last=$d
  echo "$i on btrfs" > "$edited"
  run_case "$bt" labbake_edit_btrfs
  [ -n "${skip[$bt]:-}" ] || record_stages "$bt"
  run_case virt-make-fs vmf
  run_case "mkosi cold" mkosi_cold
  [ -n "${skip[mkosi cold]:-}" ] || fetched=$(mkosi_fetched)
  run_case "mkosi warm" mkosi_warm
  if [ -z "${skip[mkosi -i edit]:-}" ]; then
    echo "$i" > "$work/mk-edit/mkosi.extra/etc/bench-edit"
    run_case "mkosi -i edit" mkosi_edit
    if [ "$i" -eq 1 ] && [ -z "${skip[mkosi -i edit]:-}" ] && ! mkosi_check "$i"; then
      skip["mkosi -i edit"]="its image does not hold the edit (/etc/bench-edit)"
    fi
  fi
  cat "$work/raw/bench.raw" > /dev/null # in the page cache, as labbake's own raw disk is
  run_case "qemu-img zlib" qimg zlib
  run_case "qemu-img zstd" qimg zstd
done
sizes "labbake cold" "$work/out/bench.qcow2"
sizes "labbake --compress" "$work/cout/bench.qcow2"
sizes "labbake edit" "$work/eout/bench.qcow2"
[ -n "${skip[$bt]:-}" ] || sizes "$bt" "$work/btrfs/eout/bench.qcow2"
[ -n "${skip[virt-make-fs]:-}" ] || sizes virt-make-fs "$work/vmf.qcow2"
[ -n "${skip[mkosi cold]:-}" ] || sizes "mkosi cold" "$work/mk-cold/image.qcow2"
[ -n "${skip[mkosi warm]:-}" ] || sizes "mkosi warm" "$work/mk-warm/image.qcow2"
[ -n "${skip[mkosi -i edit]:-}" ] || sizes "mkosi -i edit" "$work/mk-edit/image.qcow2"
[ -n "${skip[qemu-img zlib]:-}" ] || sizes "qemu-img zlib" "$work/q-zlib.qcow2"
[ -n "${skip[qemu-img zstd]:-}" ] || sizes "qemu-img zstd" "$work/q-zstd.qcow2"

# The shipped lab's master image, from a cache holding its from-source inputs.
master=""
if [ -n "${LABBAKE_BENCH_LAB_CACHE:-}" ]; then
  cur=$(f_of master)
  echo "others: the shipped lab's master image, from $LABBAKE_BENCH_LAB_CACHE" >&2
  sync
  t0=$(now)
  if peak "$cur.time" bin/labbake -v -C . --values values/from-source.yaml --cache "$LABBAKE_BENCH_LAB_CACHE" \
    --out "$work/lab" build master --offline >"$cur.out" 2>"$cur.err"; then
    t1=$(now)
    master=$(awk -v t="$(awk "BEGIN{print $t1 - $t0}")" -v k="$(maxrss "$cur.time")" -v s="$(stat -c %s "$work/lab/master.qcow2")" \
      -v st="$(stages "$cur.err" "$cur.out" "$(awk "BEGIN{print $t1 - $t0}")")" \
      'BEGIN {split(st, a, " "); printf "%.2f s wall, peak RSS %.0f MiB, master.qcow2 %d bytes; tree %.2f s, raw disk %.2f s (mke2fs %.2f s), qcow2 %.2f s, after the image %.2f s", t, k / 1024, s, a[1], a[3], a[5], a[7], a[9]}')
  else
    master="failed: $(tail -n 3 "$cur.err" | tr '\n' ' ')"
  fi
else
  master="skipped: set LABBAKE_BENCH_LAB_CACHE to a labbake cache holding the shipped lab's from-source inputs (bin/labbake --values values/from-source.yaml --cache DIR build master, once with network, fills one)"
fi

# The report.
mk=$([ $mkosi_boot = yes ] && echo "bootable GPT disk (ESP, ext4 root)" || echo "GPT disk, ext4 root, not bootable")
declare -A makes=([labbake cold]="bootable GPT disk (ESP, BIOS boot, ext4 root)" [labbake --compress]="the same, compressed"
  [labbake edit]="the same, one file changed" [$bt]="the same, one file changed; blocks in common cloned from the image before"
  [virt-make-fs]="ext4 file system, no partition table, not bootable"
  [mkosi cold]="$mk" [mkosi warm]="$mk" [mkosi -i edit]="$mk, one file changed"
  [qemu-img zlib]="labbake's raw disk compressed" [qemu-img zstd]="labbake's raw disk compressed")
lt=$(median "${walls[labbake cold]}")
ver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
fs=$(df -T "$work" | awk 'NR == 2 {print $1 " (" $2 ")"}')
dev=${fs%% *}
blk=$(lsblk -dno NAME,SIZE,ROTA,MODEL "$dev" 2>/dev/null | awk '{printf "%s %s, ROTA %s", $1, $2, $3; if ($4 != "") printf ", %s", $4}')
report() {
  echo "$(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $mem,"
  echo "work dir on $fs${blk:+, $blk}, kernel $(uname -r); load average (1, 5, 15 min) $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo "Versions: $(bin/labbake version 2>/dev/null | head -n 1 | xargs),"
  echo "virt-make-fs $(virt-make-fs --version 2>/dev/null | awk '{print $2}') (libguestfs $(ver libguestfs0), supermin $(ver supermin), QEMU $(ver qemu-system-x86)),"
  echo "mkosi $(mkosi --version 2>/dev/null | awk '{print $2}') (debootstrap $(ver debootstrap), systemd-nspawn $(ver systemd-container)),"
  echo "qemu-img $(ver qemu-utils), e2fsprogs $(ver e2fsprogs)."
  echo "\`$base\`: $entries entries, $(du -h --apparent-size "$base" | cut -f1); disk $size_mib MiB; RUNS=$runs, medians; ratio: the case's median over labbake cold's."
  echo
  echo "| case | makes | median | runs | vs labbake cold | size (bytes) | on disk (bytes) | peak RSS |"
  echo "|---|---|---|---|---|---|---|---|"
  local c m r
  for c in "${cases[@]}"; do
    if [ -n "${skip[$c]:-}" ]; then
      echo "| $c | ${makes[$c]} | — | | | | | |"
      continue
    fi
    m=$(median "${walls[$c]}")
    r=$(tr ' ' '\n' <<<"${rss[$c]:-}" | grep . | sort -n | tail -n 1)
    # shellcheck disable=SC2086 # one argument per run
    printf '| %s | %s | %.2f s | %s | %.2f× | %s | %s | %s |\n' "$c" "${makes[$c]}" "$m" "$(printf '%.1f ' ${walls[$c]} | xargs)" \
      "$(awk "BEGIN{print $m / $lt}")" "${size[$c]}" "${alloc[$c]}" "${r:+$((r / 1024)) MiB}"
  done
  echo
  echo "labbake's stages (medians of its -v log; s): raw disk = staged + mke2fs + debugfs + ESP;"
  echo "rest = the bake's other steps (plan, space, SBOM, manifest, sums); after = the rest of the wall time (start-up and the lab's loading before the bake; the work dir's removal, the PKI and the seed after it)."
  echo
  echo "| case | tree | boot | raw disk | staged | mke2fs | debugfs | qcow2 | rest | after |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  local k
  for c in "labbake cold" "labbake edit" "$bt"; do
    [ -n "${stagelog[$c]:-}" ] || continue
    printf '| %s |' "$c"
    for k in $(seq ${#stage_names[@]}); do
      printf ' %.2f |' "$(median "$(awk -v k="$k" 'NF {print $k}' <<<"${stagelog[$c]}" | xargs)")"
    done
    echo
  done
  echo
  echo "- labbake build peak RSS (/usr/bin/time -v, a cold build with --keep-raw): $((first_rss / 1024)) MiB."
  echo "- The shipped lab's master image (from-source, LABBAKE_BENCH_LAB_CACHE): $master."
  [ -z "${fetched:-}" ] || echo "- mkosi cold: its last run downloaded $fetched from $mirror."
  for c in "${cases[@]}"; do
    [ -z "${note[$c]:-}" ] || echo "- $c: ${note[$c]%.}."
    [ -z "${skip[$c]:-}" ] || echo "- $c: skipped: ${skip[$c]%.}."
  done
}
report > "$work/report.md"
echo
cat "$work/report.md"

# Into bench/RESULTS.md, between the markers (the section is added, with
# them, the first time).
begin="<!-- bench/others.sh writes from here -->"
end="<!-- to here; the analysis below is written by hand -->"
if ! grep -qF "$begin" "$results"; then
  printf '\n%s\n\n%s\n%s\n' "$heading" "$begin" "$end" >> "$results"
fi
awk -v b="$begin" -v e="$end" -v r="$work/report.md" '
  $0 == b {print; while ((getline l < r) > 0) print l; skipping = 1; next}
  $0 == e {skipping = 0}
  !skipping
' "$results" > "$work/RESULTS.md"
cat "$work/RESULTS.md" > "$results"
echo "others: wrote the tables into $results"
