package disk

import (
	"context"
	"errors"
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

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/iox"
)

// stage writes the parts of the tree that mke2fs -d can copy as an ordinary
// user — directories, regular file contents, symlinks and hardlinks, with
// their permission bits and times — into dir, and returns the debugfs script
// that does the rest: owners that differ from the staging user, every
// ctime (the host kernel sets it to now), device nodes and fifos, xattrs.
// Nothing is chowned or mknod'ed on the host, so no privilege is needed.
func stage(ctx context.Context, entries []tree.Entry, dir, xattrDir string) (script []byte, err error) {
	usedBlobs := make(map[string]bool)
	for i, e := range entries {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		host := filepath.Join(dir, filepath.FromSlash(e.Path))
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
			// Linked below, once every target exists: a link may sort
			// before its target (usr/bin/perlbug → usr/bin/perlthanks).
		case tree.CharDev, tree.BlockDev, tree.FIFO:
		default:
			return nil, fmt.Errorf("staging %s: unsupported type %s", e.Path, e.Type)
		}
	}
	for _, e := range entries {
		if e.Type != tree.Hardlink {
			continue
		}
		host := filepath.Join(dir, filepath.FromSlash(e.Path))
		target := filepath.Join(dir, filepath.FromSlash(e.Linkname))
		if err := os.Link(target, host); err != nil {
			return nil, fmt.Errorf("staging hardlink %s: %w", e.Path, err)
		}
	}
	// Children before parents, so that setting a directory's times is not
	// undone by creating its entries.
	for i := len(entries) - 1; i >= 0; i-- {
		if err := setStaged(entries[i], dir); err != nil {
			return nil, err
		}
	}

	// The script, grouped by directory: debugfs resolves each name in the
	// current directory only, instead of walking every path from the root.
	byDir := map[string][]string{}
	nx := 0
	for _, e := range entries {
		if e.Type == tree.Hardlink {
			continue // the inode and its attributes belong to the target
		}
		parent, name := path.Split(e.Path)
		if e.Path == "." {
			parent, name = "", "/"
		}
		qn, err := quote(name)
		if err != nil {
			return nil, fmt.Errorf("path %q: %w", e.Path, err)
		}
		cmds, err := fixups(e, qn, filepath.Join(dir, filepath.FromSlash(e.Path)))
		if err != nil {
			return nil, err
		}
		// What the host put on the staged inode and the tree does not
		// have (SELinux labels, ACLs inherited from the work dir's
		// default ACL): mke2fs -d copies it, debugfs takes it out again.
		extra, err := hostXattrs(filepath.Join(dir, filepath.FromSlash(e.Path)), e)
		if err != nil {
			return nil, err
		}
		for _, attr := range extra {
			qa, err := quote(attr)
			if err != nil {
				return nil, fmt.Errorf("host xattr %q of staged %s: %w", attr, e.Path, err)
			}
			cmds = append(cmds, fmt.Sprintf("ea_rm %s %s", qn, qa))
		}
		for _, attr := range slices.Sorted(maps.Keys(e.Xattrs)) {
			nx++
			vf := filepath.Join(xattrDir, strconv.Itoa(nx))
			if err := os.WriteFile(vf, e.Xattrs[attr], 0o600); err != nil {
				return nil, fmt.Errorf("staging xattr %s of %s: %w", attr, e.Path, err)
			}
			qa, err := quote(attr)
			if err != nil {
				return nil, fmt.Errorf("xattr %q of %s: %w", attr, e.Path, err)
			}
			cmds = append(cmds, fmt.Sprintf("ea_set -f %s %s %s", vf, qn, qa))
		}
		byDir[parent] = append(byDir[parent], cmds...)
	}
	var sb strings.Builder
	for _, parent := range slices.Sorted(maps.Keys(byDir)) {
		qd, err := quote("/" + parent)
		if err != nil {
			return nil, fmt.Errorf("path %q: %w", parent, err)
		}
		fmt.Fprintf(&sb, "cd %s\n", qd)
		for _, c := range byDir[parent] {
			sb.WriteString(c)
			sb.WriteByte('\n')
		}
	}
	return []byte(sb.String()), nil
}

// hostXattrs lists the extended attributes of a staged inode that the
// entry does not have, sorted. Only directories, files and symlinks are
// staged; the rest have nothing to list.
func hostXattrs(host string, e tree.Entry) ([]string, error) {
	switch e.Type {
	case tree.Dir, tree.Regular, tree.Symlink:
	default:
		return nil, nil
	}
	n, err := unix.Llistxattr(host, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing xattrs of staged %s: %w", e.Path, err)
	}
	if n == 0 {
		return nil, nil
	}
	buf := make([]byte, n)
	n, err = unix.Llistxattr(host, buf)
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of staged %s: %w", e.Path, err)
	}
	var extra []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if _, ok := e.Xattrs[name]; !ok && name != "" {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	return extra, nil
}

// setStaged gives a staged inode the entry's permission bits and times, as
// far as the host lets an ordinary user (mke2fs -d copies them from there).
// Modes the staging user could not read through are left for debugfs.
func setStaged(e tree.Entry, dir string) error {
	switch e.Type {
	case tree.Dir, tree.Regular, tree.Symlink:
	default:
		return nil
	}
	host := filepath.Join(dir, filepath.FromSlash(e.Path))
	if e.Type == tree.Dir && e.Mode&0o500 == 0o500 || e.Type == tree.Regular && e.Mode&0o400 != 0 {
		if err := os.Chmod(host, iox.FileMode(e.Mode)); err != nil {
			return fmt.Errorf("staging %s: %w", e.Path, err)
		}
	}
	t := unix.NsecToTimespec(clampTime(e.ModTime) * 1e9)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, host, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("staging %s: %w", e.Path, err)
	}
	return nil
}

// fixups lists the debugfs commands (run in the entry's parent directory)
// that set what the staged copy does not carry.
func fixups(e tree.Entry, qn, host string) ([]string, error) {
	t := clampTime(e.ModTime)
	mode := e.Mode&0o7777 | typeBits(e.Type)
	var cmds []string
	switch e.Type {
	case tree.CharDev, tree.BlockDev, tree.FIFO:
		switch e.Type {
		case tree.CharDev:
			cmds = append(cmds, fmt.Sprintf("mknod %s c %d %d", qn, e.Devmajor, e.Devminor))
		case tree.BlockDev:
			cmds = append(cmds, fmt.Sprintf("mknod %s b %d %d", qn, e.Devmajor, e.Devminor))
		default:
			cmds = append(cmds, fmt.Sprintf("mknod %s p", qn))
		}
		cmds = append(cmds,
			fmt.Sprintf("sif %s mode 0%o", qn, mode),
			fmt.Sprintf("sif %s uid %d", qn, e.UID),
			fmt.Sprintf("sif %s gid %d", qn, e.GID),
			fmt.Sprintf("sif %s atime @%d", qn, t),
			fmt.Sprintf("sif %s mtime @%d", qn, t))
	default:
		var st unix.Stat_t
		if err := unix.Lstat(host, &st); err != nil {
			return nil, fmt.Errorf("staging %s: %w", e.Path, err)
		}
		if st.Mode != mode {
			cmds = append(cmds, fmt.Sprintf("sif %s mode 0%o", qn, mode))
		}
		if int(st.Uid) != e.UID {
			cmds = append(cmds, fmt.Sprintf("sif %s uid %d", qn, e.UID))
		}
		if int(st.Gid) != e.GID {
			cmds = append(cmds, fmt.Sprintf("sif %s gid %d", qn, e.GID))
		}
		if st.Mtim.Sec != t || st.Atim.Sec != t {
			cmds = append(cmds, fmt.Sprintf("sif %s atime @%d", qn, t), fmt.Sprintf("sif %s mtime @%d", qn, t))
		}
	}
	// The host kernel set every staged ctime to the wall clock.
	return append(cmds, fmt.Sprintf("sif %s ctime @%d", qn, t)), nil
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

// quote quotes a token for debugfs' command parser: inside double quotes a
// doubled quote stands for one. A newline cannot be expressed at all.
func quote(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r\x00") {
		return "", fmt.Errorf("contains a newline or NUL, which the ext4 writer cannot express")
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`, nil
}
