// Package disk is the stage after builders/tree: it writes a Tree into a raw
// GPT disk image (partition table by go-diskfs) — a 1 MiB BIOS boot
// partition holding the caller's BIOS boot code, a FAT32 EFI system
// partition with the caller's boot files (written by this package's own
// FAT32 writer: formatting, long names, contiguous files, in a few large
// writes) and an ext4 root made by `mke2fs -d` from a staged copy of the
// tree, then fixed up by a debugfs script that sets owners, modes, times and
// xattrs and creates device nodes, so no root privilege is needed — plus the
// caller's MBR boot code. All IDs and times come from the caller (the plan),
// so equal inputs give equal bytes. builders/boot provides the boot files;
// builders/qcow2 turns the raw disk into the output image.
package disk
