// Package boot makes a Tree bootable: Tree → kernel, initramfs and boot
// loaders for UEFI (files of the EFI system partition) and BIOS (GRUB's
// MBR code and core.img); builders/disk writes them.
//
// Where it sits in the pipeline:
//
//	builders/tree (Tree) → boot (ESP files, MBR code, core.img, grub.cfg) → builders/disk (raw GPT disk)
//
// [FindKernel] finds the kernel and its initramfs in the tree, in the Debian
// layout (/boot/vmlinuz-VERSION with /boot/initrd.img-VERSION, and the
// /vmlinuz symlinks, followed inside the tree) or the bootable-container
// layout (/usr/lib/modules/VERSION/vmlinuz with initramfs.img beside it).
// Several kernels: the highest version wins (dpkg's version order) unless
// the caller pins one.
//
// [Prepare] takes the boot loaders from the tree too, for the methods asked:
//
//   - [UEFI]: systemd-boot from Debian's systemd-boot-efi, installed as
//     EFI/BOOT/BOOTX64.EFI with loader.conf, one entry, the kernel and the
//     initramfs, as [disk.ESPFile] values; without systemd-boot, GRUB from
//     grub-efi-amd64-bin, built like core.img below into
//     EFI/BOOT/BOOTX64.EFI, reading the same grub.cfg.
//   - [BIOS]: GRUB i386-pc from grub-pc-bin. The image's own grub-mkimage
//     is copied out with its ELF interpreter and libraries and run on the
//     host in a sandbox (mount, network and PID namespaces, chrooted into
//     the copies, as nobody or in a user namespace), so core.img always
//     matches the image's GRUB modules, the host needs no GRUB and the
//     image's code never sees the host. The core.img finds the root file
//     system by UUID and reads /boot/grub/grub.cfg; boot.img and core.img
//     then get the sector pointers grub-setup would write for core.img at
//     the start of the BIOS boot partition.
//
// Nothing is written to a disk here and nothing is mounted: builders/disk
// writes the bytes. The output depends only on the tree and the options, so
// equal inputs give equal bytes.
package boot
