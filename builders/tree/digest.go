package tree

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Digest returns "sha256:<hex>" over a canonical listing of every entry
// (path, type, mode, owner, time, device numbers, link target, sorted
// xattrs, and the size and sha256 of regular file contents). It reads every
// blob, so it costs about as much as hashing the whole tree's data. Two
// trees with the same Digest stage to the same files.
func (t *Tree) Digest() (string, error) {
	h := sha256.New()
	buf := make([]byte, copyBufSize)
	var sb strings.Builder
	for _, e := range t.Entries() {
		sb.Reset()
		sb.WriteString(strconv.Quote(e.Path))
		fmt.Fprintf(&sb, " %s %#o %d:%d %d.%09d", e.Type, e.Mode, e.UID, e.GID, e.ModTime.Unix(), e.ModTime.Nanosecond())
		switch e.Type {
		case Symlink, Hardlink:
			sb.WriteString(" -> " + strconv.Quote(e.Linkname))
		case CharDev, BlockDev:
			fmt.Fprintf(&sb, " %d,%d", e.Devmajor, e.Devminor)
		case Regular:
			sum, n, err := hashFile(e.Content.Path, buf)
			if err != nil {
				return "", fmt.Errorf("digest: entry %q: %w", e.Path, err)
			}
			fmt.Fprintf(&sb, " %d sha256:%s", n, sum)
		}
		keys := make([]string, 0, len(e.Xattrs))
		for k := range e.Xattrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			sb.WriteString(" xattr:" + strconv.Quote(k) + "=" + hex.EncodeToString(e.Xattrs[k]))
		}
		sb.WriteByte('\n')
		io.WriteString(h, sb.String())
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(p string, buf []byte) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(struct{ io.Writer }{h}, struct{ io.Reader }{f}, buf)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
