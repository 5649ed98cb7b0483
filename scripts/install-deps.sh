#!/usr/bin/env bash
# Installs the host tools labbake and its tests use, from Debian's packages,
# when any is missing. Runs apt-get as root (or through sudo).
#
#   scripts/install-deps.sh         the packages of the tools that are missing
#   scripts/install-deps.sh --all   every package below, whether or not its tool
#                                   is found (CI: .ci/run and the release
#                                   workflow); kubectl only when missing
set -euo pipefail

all=false
case "${1:-}" in
  "") ;;
  --all) all=true ;;
  *) echo "usage: $0 [--all]" >&2; exit 2 ;;
esac

# tool -> package
declare -A need=(
  [mke2fs]=e2fsprogs [debugfs]=e2fsprogs [e2fsck]=e2fsprogs
  [qemu-img]=qemu-utils
  [sgdisk]=gdisk
  [mkfs.vfat]=dosfstools [mcopy]=mtools
  [mmdebstrap]=mmdebstrap
  [zstd]=zstd [xz]=xz-utils
  [docker-registry]=docker-registry
  [qemu-system-x86_64]=qemu-system-x86
  [isoinfo]=genisoimage [xorriso]=xorriso [cloud-init]=cloud-init
  [ssh]=openssh-client [ssh-keygen]=openssh-client [openssl]=openssl
  [socat]=socat [dnsmasq]=dnsmasq-base [nft]=nftables [ip]=iproute2
  [systemd-analyze]=systemd [newuidmap]=uidmap [kubectl]=kubernetes-client
  [gpgv]=gpgv [dpkg-deb]=dpkg [runc]=runc [setcap]=libcap2-bin [skopeo]=skopeo
  [mkfs.btrfs]=btrfs-progs # a file system that shares extents, for the image reuse tests
)
# file -> package
declare -A need_file=(
  [/usr/share/OVMF/OVMF_CODE_4M.fd]=ovmf
  [/usr/lib/grub/i386-pc/boot.img]=grub-pc-bin
  [/usr/lib/grub/x86_64-efi/kernel.img]=grub-efi-amd64-bin
  # the cluster test checks Debian's InRelease with it (test/upstream)
  [/usr/share/keyrings/debian-archive-keyring.gpg]=debian-archive-keyring
)
# Not for --all: part of every Debian system (never upgraded behind one's
# back), or any kubectl will do.
declare -A only_missing=([systemd]=1 [dpkg]=1 [kubernetes-client]=1)

want=()
for tool in "${!need[@]}"; do
  pkg=${need[$tool]}
  if $all && [ -z "${only_missing[$pkg]:-}" ]; then want+=("$pkg"); continue; fi
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || want+=("$pkg")
done
for file in "${!need_file[@]}"; do
  if $all || [ ! -f "$file" ]; then want+=("${need_file[$file]}"); fi
done
[ ${#want[@]} -eq 0 ] && exit 0
mapfile -t pkgs < <(printf '%s\n' "${want[@]}" | sort -u)
if [ "$(id -u)" -eq 0 ]; then sudo=()
elif command -v sudo >/dev/null 2>&1; then sudo=(sudo)
else
  echo "install-deps: missing packages: ${pkgs[*]} (run as root: apt-get install -y ${pkgs[*]})" >&2
  exit 1
fi
echo "install-deps: installing ${pkgs[*]}" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
