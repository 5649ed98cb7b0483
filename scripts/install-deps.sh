#!/usr/bin/env bash
# Installs the host tools labbake and its tests use, from Debian's packages,
# when any is missing. Runs apt-get as root (or through sudo).
set -euo pipefail

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
  [gpgv]=gpgv [dpkg-deb]=dpkg [runc]=runc [setcap]=libcap2-bin
)
missing=()
for tool in "${!need[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("${need[$tool]}")
done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || missing+=(ovmf)
[ -f /usr/lib/grub/i386-pc/boot.img ] || missing+=(grub-pc-bin)
[ -f /usr/lib/grub/x86_64-efi/kernel.img ] || missing+=(grub-efi-amd64-bin)
# the cluster test checks Debian's InRelease with it (test/upstream)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -eq 0 ]; then sudo=""
elif command -v sudo >/dev/null 2>&1; then sudo="sudo"
else
  echo "install-deps: missing packages: $pkgs (run as root: apt-get install -y $pkgs)" >&2
  exit 1
fi
echo "install-deps: installing $pkgs" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $pkgs >/dev/null
