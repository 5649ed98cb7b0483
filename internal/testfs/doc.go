// Package testfs gives tests a directory on a file system with a property
// the machine's own may lack: Reflink mounts a small btrfs, whose files
// share extents, so that labbake's image reuse (internal/bake/reuse.go) is
// tested for real. Tests only.
package testfs
