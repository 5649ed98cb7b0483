package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/labbake/labbake/builders/tree"
)

// A root file system is written in two steps when Options.Upper is set:
// the lower part — every directory and every entry Upper does not claim —
// by mke2fs -d and the fix-up script, then the upper part — the files and
// symlinks Upper claims, typically the recipe's own small files — added
// into that file system by debugfs. The lower part does not change when a
// recipe file is edited, so it can be kept between builds (RootCache) and
// the second step redone alone; a build that reuses it writes the same
// bytes as one that makes it, since both run the same second step on the
// same first.

// split divides entries into the lower and upper parts. Only regular files
// that no hardlink points at and symlinks can be upper: a hardlink and its
// target stay together in the lower part, and directories are all lower,
// so that the upper part only ever adds names to existing directories.
func split(entries []tree.Entry, upper func(tree.Entry) bool) (lo, up []tree.Entry) {
	targets := map[string]bool{}
	for _, e := range entries {
		if e.Type == tree.Hardlink {
			targets[e.Linkname] = true
		}
	}
	for _, e := range entries {
		if (e.Type == tree.Regular && !targets[e.Path] || e.Type == tree.Symlink) && upper(e) {
			up = append(up, e)
		} else {
			lo = append(lo, e)
		}
	}
	return lo, up
}

// writeUpper adds the upper entries to the root file system at dev (a
// debugfs device spec) and gives their parent directories back the times
// the tree says (debugfs sets them to the clock when it adds a name).
// dirs maps a directory path to its entry.
func writeUpper(ctx context.Context, up []tree.Entry, dirs map[string]tree.Entry, dev, workDir string, env []string) (int, error) {
	stageDir := filepath.Join(workDir, "upper")
	if err := os.MkdirAll(stageDir, 0o755); err != nil {
		return 0, fmt.Errorf("staging: %w", err)
	}
	byDir := map[string][]string{}
	parents := map[string]bool{}
	used := map[string]bool{}
	nx := 0
	for i, e := range up {
		parent, name := path.Split(e.Path)
		parent = strings.TrimSuffix(parent, "/")
		if parent == "" {
			parent = "."
		}
		parents[parent] = true
		qn, err := quote(name)
		if err != nil {
			return 0, fmt.Errorf("path %q: %w", e.Path, err)
		}
		var cmds []string
		switch e.Type {
		case tree.Regular:
			host := filepath.Join(stageDir, strconv.Itoa(i))
			if err := stageFile(e, host, used); err != nil {
				return 0, err
			}
			qh, err := quote(host)
			if err != nil {
				return 0, fmt.Errorf("work dir %q: %w", host, err)
			}
			cmds = append(cmds, fmt.Sprintf("write %s %s", qh, qn))
		case tree.Symlink:
			qt, err := quote(e.Linkname)
			if err != nil {
				return 0, fmt.Errorf("symlink %q: %w", e.Path, err)
			}
			cmds = append(cmds, fmt.Sprintf("symlink %s %s", qn, qt))
		default:
			return 0, fmt.Errorf("%s: a %s cannot be added to the root file system afterwards", e.Path, e.Type)
		}
		t := clampTime(e.ModTime)
		cmds = append(cmds,
			fmt.Sprintf("sif %s mode 0%o", qn, e.Mode&0o7777|typeBits(e.Type)),
			fmt.Sprintf("sif %s uid %d", qn, e.UID),
			fmt.Sprintf("sif %s gid %d", qn, e.GID),
			fmt.Sprintf("sif %s atime @%d", qn, t),
			fmt.Sprintf("sif %s mtime @%d", qn, t),
			fmt.Sprintf("sif %s ctime @%d", qn, t))
		for _, attr := range slices.Sorted(maps.Keys(e.Xattrs)) {
			nx++
			vf := filepath.Join(stageDir, "x"+strconv.Itoa(nx))
			if err := os.WriteFile(vf, e.Xattrs[attr], 0o600); err != nil {
				return 0, fmt.Errorf("staging xattr %s of %s: %w", attr, e.Path, err)
			}
			qa, err := quote(attr)
			if err != nil {
				return 0, fmt.Errorf("xattr %q of %s: %w", attr, e.Path, err)
			}
			qv, err := quote(vf)
			if err != nil {
				return 0, fmt.Errorf("work dir %q: %w", vf, err)
			}
			cmds = append(cmds, fmt.Sprintf("ea_set -f %s %s %s", qv, qn, qa))
		}
		byDir[parent] = append(byDir[parent], cmds...)
	}
	var sb strings.Builder
	for _, parent := range slices.Sorted(maps.Keys(byDir)) {
		qd, err := quote("/" + strings.TrimPrefix(parent, "."))
		if err != nil {
			return 0, fmt.Errorf("path %q: %w", parent, err)
		}
		fmt.Fprintf(&sb, "cd %s\n", qd)
		for _, c := range byDir[parent] {
			sb.WriteString(c)
			sb.WriteByte('\n')
		}
	}
	sb.WriteString("cd /\n")
	for _, parent := range slices.Sorted(maps.Keys(parents)) {
		d, ok := dirs[parent]
		if !ok {
			return 0, fmt.Errorf("%s: parent directory of an added file is not in the tree", parent)
		}
		qd, err := quote("/" + strings.TrimPrefix(parent, "."))
		if err != nil {
			return 0, fmt.Errorf("path %q: %w", parent, err)
		}
		t := clampTime(d.ModTime)
		fmt.Fprintf(&sb, "sif %s atime @%d\nsif %s mtime @%d\nsif %s ctime @%d\n", qd, t, qd, t, qd, t)
	}
	script := filepath.Join(workDir, "upper.debugfs")
	if err := os.WriteFile(script, []byte(sb.String()), 0o644); err != nil {
		return 0, fmt.Errorf("writing the upper script: %w", err)
	}
	debugfs, err := findTool("debugfs")
	if err != nil {
		return 0, err
	}
	out, err := output(ctx, env, debugfs, "-w", "-f", script, dev)
	if err != nil {
		return 0, err
	}
	if msg := debugfsErrors(out); msg != "" {
		return 0, fmt.Errorf("adding files to the root filesystem: %s", msg)
	}
	return strings.Count(sb.String(), "\n"), nil
}

// Hasher digests entry lists, remembering each blob's content digest so
// that the same tree hashed twice (for the disk's IDs, then for the root
// cache's key) reads every file once. Blobs do not change during a build.
type Hasher struct {
	mu   sync.Mutex
	sums map[string]string // blob path → hex sha256
}

// NewHasher returns an empty Hasher.
func NewHasher() *Hasher { return &Hasher{sums: map[string]string{}} }

// Digest is a digest of entries: every path, type, mode, owner, time,
// link, device, xattr and content (read on all cores the first time).
func (h *Hasher) Digest(ctx context.Context, entries []tree.Entry) (string, error) {
	if err := h.hashBlobs(ctx, entries); err != nil {
		return "", err
	}
	d := sha256.New()
	var sb strings.Builder
	for _, e := range entries {
		sb.Reset()
		fmt.Fprintf(&sb, "%q %s %#o %d:%d %d.%09d", e.Path, e.Type, e.Mode, e.UID, e.GID, e.ModTime.Unix(), e.ModTime.Nanosecond())
		switch e.Type {
		case tree.Symlink, tree.Hardlink:
			fmt.Fprintf(&sb, " -> %q", e.Linkname)
		case tree.CharDev, tree.BlockDev:
			fmt.Fprintf(&sb, " %d,%d", e.Devmajor, e.Devminor)
		case tree.Regular:
			if e.Content == nil {
				sb.WriteString(" empty")
			} else {
				h.mu.Lock()
				sb.WriteString(" sha256:" + h.sums[e.Content.Path])
				h.mu.Unlock()
			}
		}
		for _, k := range slices.Sorted(maps.Keys(e.Xattrs)) {
			fmt.Fprintf(&sb, " xattr:%q=%s", k, hex.EncodeToString(e.Xattrs[k]))
		}
		sb.WriteByte('\n')
		io.WriteString(d, sb.String())
	}
	return "sha256:" + hex.EncodeToString(d.Sum(nil)), nil
}

// hashBlobs digests the blobs of entries not digested yet, on all cores.
func (h *Hasher) hashBlobs(ctx context.Context, entries []tree.Entry) error {
	var todo []string
	seen := map[string]bool{}
	h.mu.Lock()
	for _, e := range entries {
		if e.Type != tree.Regular || e.Content == nil || h.sums[e.Content.Path] != "" || seen[e.Content.Path] {
			continue
		}
		if e.Content.Digest != "" { // taken when the blob was written
			h.sums[e.Content.Path] = e.Content.Digest
			continue
		}
		seen[e.Content.Path] = true
		todo = append(todo, e.Content.Path)
	}
	h.mu.Unlock()
	work := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(todo), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for p := range work {
				sum, err := hashBlob(p, buf)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				h.mu.Lock()
				h.sums[p] = sum
				h.mu.Unlock()
			}
		}()
	}
	for _, p := range todo {
		if ctx.Err() != nil {
			break
		}
		work <- p
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	return ctx.Err()
}

func hashBlob(p string, buf []byte) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", p, err)
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.CopyBuffer(d, f, buf); err != nil {
		return "", fmt.Errorf("hashing %s: %w", p, err)
	}
	return hex.EncodeToString(d.Sum(nil)), nil
}

// LowerDigest digests the entries that upper leaves in the lower part.
func (h *Hasher) LowerDigest(ctx context.Context, entries []tree.Entry, upper func(tree.Entry) bool) (string, error) {
	lo, _ := split(entries, upper)
	return h.Digest(ctx, lo)
}

// IDsFrom derives every ID a disk carries from seed (a digest of what
// the disk holds): the same seed gives the same IDs.
func IDsFrom(seed string) IDs {
	uuid := func(purpose string) string {
		sum := sha256.Sum256([]byte("labbake disk uuid\x00" + seed + "\x00" + purpose))
		b := sum[:16]
		b[6] = b[6]&0x0f | 0x80
		b[8] = b[8]&0x3f | 0x80
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	}
	sum := sha256.Sum256([]byte("labbake disk u32\x00" + seed + "\x00esp-volume-id"))
	return IDs{
		DiskGUID:    uuid("disk"),
		BIOSGUID:    uuid("part-bios"),
		ESPGUID:     uuid("part-esp"),
		RootGUID:    uuid("part-root"),
		RootFSUUID:  uuid("root-fs"),
		ESPVolumeID: uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3]),
	}
}
