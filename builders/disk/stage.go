package disk

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labbake/labbake/builders/tree"
)

// stage writes the parts of the tree that mke2fs -d can copy as an ordinary
// user — directories, regular file contents, symlinks and hardlinks — into
// dir, and returns the debugfs script that gives every inode its real type,
// mode, owner, times and xattrs and creates the device nodes and fifos.
// Nothing is chowned or mknod'ed on the host, so no privilege is needed.
func stage(ctx context.Context, entries []tree.Entry, dir, xattrDir string) (script []byte, err error) {
	var sb strings.Builder
	var fixups strings.Builder
	usedBlobs := make(map[string]bool)
	nx := 0
	for i, e := range entries {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		host := filepath.Join(dir, filepath.FromSlash(e.Path))
		img, err := imagePath(e.Path)
		if err != nil {
			return nil, err
		}
		switch e.Type {
		case tree.Dir:
			if e.Path != "." {
				if err := os.Mkdir(host, 0o755); err != nil {
					return nil, fmt.Errorf("staging %s: %w", e.Path, err)
				}
			}
		case tree.Regular:
			if err := stageFile(e, host, usedBlobs); err != nil {
				return nil, err
			}
		case tree.Symlink:
			if err := os.Symlink(e.Linkname, host); err != nil {
				return nil, fmt.Errorf("staging %s: %w", e.Path, err)
			}
		case tree.Hardlink:
			target := filepath.Join(dir, filepath.FromSlash(e.Linkname))
			if err := os.Link(target, host); err != nil {
				return nil, fmt.Errorf("staging hardlink %s: %w", e.Path, err)
			}
			// The inode is shared: its attributes come from the target.
			continue
		case tree.CharDev, tree.BlockDev, tree.FIFO:
			if err := writeMknod(&sb, e); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("staging %s: unsupported type %s", e.Path, e.Type)
		}
		writeFixups(&fixups, img, e)
		for _, name := range slices.Sorted(maps.Keys(e.Xattrs)) {
			nx++
			vf := filepath.Join(xattrDir, strconv.Itoa(nx))
			if err := os.WriteFile(vf, e.Xattrs[name], 0o600); err != nil {
				return nil, fmt.Errorf("staging xattr %s of %s: %w", name, e.Path, err)
			}
			q, err := quote(name)
			if err != nil {
				return nil, fmt.Errorf("xattr %q of %s: %w", name, e.Path, err)
			}
			fmt.Fprintf(&fixups, "ea_set -f %s %s %s\n", vf, img, q)
		}
	}
	sb.WriteString(fixups.String())
	return []byte(sb.String()), nil
}

// stageFile puts a regular file's content at host. A blob the build owns is
// hard-linked (no copy); anything else is copied, which Go does with
// copy_file_range where the kernel allows.
func stageFile(e tree.Entry, host string, used map[string]bool) error {
	if e.Content == nil {
		f, err := os.OpenFile(host, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("staging %s: %w", e.Path, err)
		}
		return f.Close()
	}
	if e.Content.Owned && !used[e.Content.Path] {
		used[e.Content.Path] = true
		if err := os.Link(e.Content.Path, host); err == nil {
			return nil
		}
	}
	src, err := os.Open(e.Content.Path)
	if err != nil {
		return fmt.Errorf("staging %s: %w", e.Path, err)
	}
	defer src.Close()
	dst, err := os.OpenFile(host, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("staging %s: %w", e.Path, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("staging %s: %w", e.Path, err)
	}
	return dst.Close()
}

// writeMknod creates a device node or fifo. debugfs' mknod takes a bare
// name in the current directory (a slash would end up inside the name), so
// change into the parent first.
func writeMknod(b *strings.Builder, e tree.Entry) error {
	dir, name := path.Split("/" + e.Path)
	qd, err := quote(dir)
	if err != nil {
		return fmt.Errorf("path %q: %w", e.Path, err)
	}
	qn, err := quote(name)
	if err != nil {
		return fmt.Errorf("path %q: %w", e.Path, err)
	}
	switch e.Type {
	case tree.CharDev:
		fmt.Fprintf(b, "cd %s\nmknod %s c %d %d\n", qd, qn, e.Devmajor, e.Devminor)
	case tree.BlockDev:
		fmt.Fprintf(b, "cd %s\nmknod %s b %d %d\n", qd, qn, e.Devmajor, e.Devminor)
	default:
		fmt.Fprintf(b, "cd %s\nmknod %s p\n", qd, qn)
	}
	b.WriteString("cd /\n")
	return nil
}

// writeFixups sets the inode fields that the staged copy cannot carry.
func writeFixups(b *strings.Builder, img string, e tree.Entry) {
	mode := e.Mode&0o7777 | typeBits(e.Type)
	t := clampTime(e.ModTime)
	fmt.Fprintf(b, "sif %s mode 0%o\nsif %s uid %d\nsif %s gid %d\n", img, mode, img, e.UID, img, e.GID)
	for _, f := range [...]string{"atime", "mtime", "ctime", "crtime"} {
		fmt.Fprintf(b, "sif %s %s @%d\n", img, f, t)
	}
}

func typeBits(t tree.Type) uint32 {
	switch t {
	case tree.Dir:
		return 0o040000
	case tree.Symlink:
		return 0o120000
	case tree.CharDev:
		return 0o020000
	case tree.BlockDev:
		return 0o060000
	case tree.FIFO:
		return 0o010000
	}
	return 0o100000
}

// clampTime keeps a time within what a 32-bit ext4 timestamp field holds
// without extra epoch bits.
func clampTime(t time.Time) int64 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	if s > 1<<31-1 {
		return 1<<31 - 1
	}
	return s
}

// imagePath turns a tree path into a quoted absolute path for debugfs.
func imagePath(p string) (string, error) {
	if p == "." {
		return `"/"`, nil
	}
	q, err := quote("/" + p)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", p, err)
	}
	return q, nil
}

// quote quotes a token for debugfs' command parser: inside double quotes a
// doubled quote stands for one. A newline cannot be expressed at all.
func quote(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r\x00") {
		return "", fmt.Errorf("contains a newline or NUL, which the ext4 writer cannot express")
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`, nil
}
