// Package space tells what takes the space in an image's root file system.
//
// Where it sits in the pipeline:
//
//	Recipe inputs → builders/tree (assembled Tree, boot files added) → space.Measure → ROLE.manifest.json "space"
//
// [Measure] reads the assembled [tree.Tree] — the same data builders/disk
// stages, so nothing on disk is walked a second time — and sums the bytes of
// regular file content (a hardlinked file once) by the build stage each file
// came from (tree.Entry.Origin: "base", "layers[0] …", "artifacts[2]",
// "images", "overlays[0] …", "units", "files", "boot" …), by directory at a
// fixed depth (/usr/lib/modules, /usr/local/bin, /var/lib/containerd …), by
// Debian package where a stage brought a dpkg database
// (/var/lib/dpkg/info/*.list: the only files it reads), and lists the
// largest files. Every list is ordered by bytes, largest first, then by
// name, so the same tree gives the same [Report].
//
// The sizes are of content, not of the blocks ext4 gives it: a file of
// 1 byte counts 1. Directories, inodes and the journal are not counted.
package space
