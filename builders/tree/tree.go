package tree

import (
	"fmt"
	"time"
)

// Type is the kind of a filesystem entry.
type Type uint8

// Entry types, as in a tar header or an ext4 inode.
const (
	Regular Type = iota
	Dir
	Symlink
	Hardlink
	CharDev
	BlockDev
	FIFO
)

func (t Type) String() string {
	switch t {
	case Regular:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case Hardlink:
		return "hardlink"
	case CharDev:
		return "chardev"
	case BlockDev:
		return "blockdev"
	case FIFO:
		return "fifo"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Blob is the content of a regular file: a file on the host holding the
// bytes. Owned blobs live in the build's work dir and are referenced by
// exactly one entry, so a later stage may hard-link or move them instead of
// copying; blobs that are not owned (a dir base, an overlay) are read only.
type Blob struct {
	Path  string // absolute host path of the bytes
	Size  int64
	Owned bool
}

// Entry is one path of the root filesystem.
type Entry struct {
	// Path is clean, relative to the root, without a leading slash, and
	// never leaves the root. The root itself is ".".
	Path string
	Type Type
	// Mode holds the permission bits including setuid, setgid and sticky
	// (mask 07777); the type lives in Type.
	Mode    uint32
	UID     int
	GID     int
	ModTime time.Time
	// Xattrs maps a full attribute name (e.g. "security.capability") to its
	// raw value.
	Xattrs map[string][]byte
	// Linkname is the target of a symlink (as written, may be absolute) or,
	// for a hardlink, the Path of the regular file it links to.
	Linkname string
	Devmajor uint32
	Devminor uint32
	// Content is set for regular files only.
	Content *Blob
}
