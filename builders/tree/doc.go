// Package tree assembles the root filesystem of an image as data.
//
// Where it sits in the pipeline:
//
//	Recipe inputs → Tree (data) → builders/disk stages it
//
// The recipe's inputs — a base (a rootfs tarball or a host directory), tar
// layers, overlay directories, systemd units and inline files — are applied,
// in order, to a [Tree]: an in-memory map from a clean relative path to an
// [Entry] (type, mode, owner, time, xattrs, link target, device numbers and,
// for regular files, a reference to a [Blob] holding the bytes). Nothing is
// extracted here: builders/disk later stages the Tree into a directory, runs
// mke2fs -d on it and fixes owners, modes, times, xattrs and device nodes
// with a debugfs script.
//
// Assembling never writes outside its work dir, whatever an input says: the
// only files this package creates are blobs, with generated names, in the
// blob directory the caller passes (created when missing), and the only
// files it deletes are owned blobs of entries that were replaced or removed. Paths are resolved inside the Tree
// (symlinks in parent components are followed within the root, ".." clamps at
// the root), entries whose name leaves the root are errors, and symlink
// targets are stored as data, never followed on the host.
//
// Each entry carries an Origin: the label of the build stage that added or
// last replaced it ([Tree.SetOrigin]), so later checks (builders/secrets) can
// say where a file came from. It is not part of the image.
//
// Times are clamped to the Tree's epoch (SOURCE_DATE_EPOCH), so two builds of
// the same inputs produce the same Tree.
//
// A Tree can be kept on the host between builds as a snapshot
// (WriteSnapshot, ReadSnapshot): its entries and each blob's bytes once,
// read only, by the sha256 that every blob made here carries. internal/bake
// keeps the tree of a recipe's base and layers that way.
//
// A Tree is not safe for concurrent use.
package tree
