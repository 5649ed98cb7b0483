// Package boot makes a Tree bootable: Tree → kernel, initramfs and boot
// loader files for the EFI system partition (UEFI); builders/disk writes
// them.
//
// Where it sits in the pipeline:
//
//	builders/tree (Tree) → boot (ESP files) → builders/disk (raw GPT disk)
//
// [FindKernel] finds the kernel and its initramfs in the tree, in the Debian
// layout (/boot/vmlinuz-VERSION with /boot/initrd.img-VERSION, and the
// /vmlinuz symlinks, followed inside the tree) or the bootable-container
// layout (/usr/lib/modules/VERSION/vmlinuz with initramfs.img beside it).
// Several kernels: the highest version wins (dpkg's version order) unless
// the caller pins one.
//
// [Prepare] takes the boot loader from the tree too — systemd-boot from
// Debian's systemd-boot-efi, installed as EFI/BOOT/BOOTX64.EFI — and lays
// out loader.conf, one boot entry, the kernel and the initramfs as
// [disk.ESPFile] values. Nothing is written here and nothing on the host is
// run: builders/disk writes the files as bytes into the FAT32 ESP. The
// output depends only on the tree and the options, so equal inputs give
// equal ESPs.
//
// BIOS boot (GRUB i386-pc) is not done yet.
package boot
