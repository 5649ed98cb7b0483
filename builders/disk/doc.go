// Package disk is the stage after builders/tree: it writes a Tree into a raw
// GPT disk image — a 1 MiB BIOS boot partition, a FAT32 EFI system partition
// (go-diskfs) and an ext4 root made by `mke2fs -d` from a staged copy of the
// tree, then fixed up by a debugfs script that sets owners, modes, times and
// xattrs and creates device nodes, so no root privilege is needed. All IDs
// and times come from the caller (the plan), so equal inputs give equal
// bytes. builders/qcow2 turns the raw disk into the output image.
package disk
