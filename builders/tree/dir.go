package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/labbake/labbake/internal/iox"
	"golang.org/x/sys/unix"
)

// ApplyDir adds the host directory hostDir (a `dir:` base or an overlay)
// below destPrefix ("" or "." for the root).
//
// Regular files become Regular entries whose Blob points at the host file
// (not owned, not copied); files hard-linked to each other (same device and
// inode) become one Regular entry plus Hardlink entries, the first in walk
// order being the Regular one. Symlinks are stored with their target as is
// and never followed on the host (hostDir itself may be a symlink to a
// directory). Devices and FIFOs are kept; sockets are skipped with a debug
// note. Modes keep setuid, setgid and sticky; the owner is 0:0 (a
// checkout's owner is meaningless) and every time is the tree's epoch (a
// checkout's times are not reproducible).
//
// A directory that already exists in the tree keeps its metadata (a
// checkout's directory modes come from the umask; an overlay's etc/ must not
// change /etc), and a symlink in the tree that resolves to a directory is
// kept and written through (an overlay's lib/ goes to usr/lib on a
// merged-/usr base, like rsync --keep-dirlinks); new directories take the
// host directory's mode. (ApplyTar, like tar, replaces such a symlink by
// the directory.)
//
// skip, when not nil, is called with each path relative to hostDir
// (slash-separated); returning true skips the file, or the whole directory.
func (t *Tree) ApplyDir(hostDir, destPrefix string, skip func(rel string) bool) error {
	if err := t.applyDir(hostDir, destPrefix, skip); err != nil {
		return fmt.Errorf("dir %s: %w", hostDir, err)
	}
	return nil
}

type devIno struct{ dev, ino uint64 }

func (t *Tree) applyDir(hostDir, destPrefix string, skip func(rel string) bool) error {
	root, err := filepath.Abs(hostDir)
	if err != nil {
		return err
	}
	// filepath.WalkDir does not descend into a root that is a symlink:
	// walk the directory it leads to, or a symlinked overlay or dir: base
	// would add nothing but its top directory.
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	prefix := "."
	if destPrefix != "" {
		if prefix, err = cleanRel(destPrefix); err != nil {
			return fmt.Errorf("destination %q: %w", destPrefix, err)
		}
	}
	seen := make(map[devIno]string)
	return filepath.WalkDir(root, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, hp)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var info fs.FileInfo
		if rel == "." {
			info = fi
		} else if info, err = d.Info(); err != nil {
			return err
		}
		if err := t.addHostFile(hp, join(prefix, rel), info, seen); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
}

// addHostFile adds the host file hp (lstat info) at dest.
func (t *Tree) addHostFile(hp, dest string, info fs.FileInfo, seen map[devIno]string) error {
	m := info.Mode()
	e := Entry{Path: dest, Mode: iox.PermBits(m), ModTime: t.epoch}
	st, _ := info.Sys().(*syscall.Stat_t)
	switch {
	case m.IsDir():
		final, err := t.resolve(dest)
		if err != nil {
			return err
		}
		if n, ok := t.nodes[final]; ok {
			if n.e.Type == Dir {
				return nil
			}
			if n.e.Type == Symlink {
				// lib -> usr/lib on a merged-/usr base: write through it.
				if r, err := t.resolveDir(final); err == nil {
					if rn, ok := t.nodes[r]; ok && rn.e.Type == Dir {
						t.log.Debug("tree: overlay dir goes through a symlink in the tree", "path", final, "to", r)
						return nil
					}
				}
			}
		}
		e.Type = Dir
	case m.IsRegular():
		var key devIno
		if st != nil && st.Nlink > 1 {
			key = devIno{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := seen[key]; ok {
				e.Type = Hardlink
				e.Linkname = first
				_, err := t.add(e, nil)
				return err
			}
		}
		e.Type = Regular
		e.Content = &Blob{Path: hp, Size: info.Size()}
		final, err := t.add(e, nil)
		if err != nil {
			return err
		}
		if st != nil && st.Nlink > 1 {
			seen[key] = final
		}
		return nil
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(hp)
		if err != nil {
			return err
		}
		e.Type = Symlink
		e.Linkname = target
	case m&fs.ModeSocket != 0:
		t.log.Debug("tree: skipping socket", "path", hp)
		return nil
	case m&fs.ModeNamedPipe != 0:
		e.Type = FIFO
	case m&fs.ModeDevice != 0:
		e.Type = BlockDev
		if m&fs.ModeCharDevice != 0 {
			e.Type = CharDev
		}
		if st == nil {
			return errors.New("device without device numbers")
		}
		rdev := uint64(st.Rdev)
		e.Devmajor, e.Devminor = unix.Major(rdev), unix.Minor(rdev)
	default:
		return fmt.Errorf("unsupported file type %s", m.Type())
	}
	_, err := t.add(e, nil)
	return err
}
