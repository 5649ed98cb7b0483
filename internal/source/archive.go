package source

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/labbake/labbake/internal/iox"
)

// Member is an archive member as Extract hands it over.
type Member struct {
	// Name is the member's cleaned slash path: no leading "./" or "/", no
	// "." or ".." elements, no trailing slash.
	Name string
	// Mode is the permission bits with setuid, setgid and sticky (07777).
	Mode int64
	Size int64
	// Type is a tar typeflag: tar.TypeReg, tar.TypeDir, tar.TypeSymlink,
	// tar.TypeLink (tar only) or another of tar's kinds.
	Type byte
	// Linkname is a symlink's target as written, or a hard link's target
	// member, cleaned like Name.
	Linkname string
}

// Extract calls fn for each member of the archive in blob digest whose
// name is one of paths or lies below one of them ("etcd-v3.5.17/etcd" or
// "etcd-v3.5.17"; "." means everything), in archive order. r reads the
// member's content; it is empty for all but regular files and is valid only
// during the call. The archive, told by magic bytes, may be a tar (plain,
// gzip, zstd, xz or bzip2 compressed), a zip, which is first copied to a
// temporary file in tmpDir ("" for the system's), or a Debian binary
// package (.deb), whose members are those of its data.tar, named as in a
// tar ("usr/bin/catatonit").
//
// It is an error if a path matches no member (the error names the missing
// paths and some of the archive's members) and if any member's name, or a
// hard link's target, leads out of the archive with "..". Errors found late
// in a stream (a hostile member, a blob that fails verification) come after
// fn has seen the members before them: on error, discard what fn made.
func Extract(ctx context.Context, store Store, digest string, paths []string, tmpDir string, fn func(m Member, r io.Reader) error) error {
	fail := func(err error) error { return fmt.Errorf("archive %s: %w", digest, err) }
	m, err := newMatcher(paths)
	if err != nil {
		return fail(err)
	}
	rc, err := store.Open(digest)
	if err != nil {
		return fail(err)
	}
	defer rc.Close()
	raw := bufio.NewReaderSize(iox.Reader(ctx, rc), 64<<10)
	magic, err := raw.Peek(512)
	if err != nil && err != io.EOF {
		return fail(err)
	}
	kind := detect(magic)
	switch kind {
	case "zip":
		err = extractZip(ctx, raw, tmpDir, m, fn)
	case "tar", "tar.gz", "tar.zst", "tar.xz", "tar.bz2":
		err = extractTar(ctx, raw, kind, m, fn)
	case "deb":
		err = extractDeb(ctx, raw, m, fn)
	default:
		err = fmt.Errorf("not a tar, zip or Debian package (.deb), nor a compressed tar (it starts with % x)", magic[:min(len(magic), 8)])
	}
	if err != nil {
		return fail(err)
	}
	// Read the blob to its end so that the store verifies it.
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return fail(err)
	}
	if missing := m.missing(); missing != "" {
		return fail(fmt.Errorf("%s: not found: %s; the archive has %s", kind, missing, m.some()))
	}
	return nil
}

// detect tells an archive's kind by its first bytes.
func detect(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return "tar.gz"
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "tar.zst"
	case bytes.HasPrefix(b, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "tar.xz"
	case bytes.HasPrefix(b, []byte("BZh")):
		return "tar.bz2"
	case bytes.HasPrefix(b, []byte("PK\x03\x04")), bytes.HasPrefix(b, []byte("PK\x05\x06")):
		return "zip"
	case bytes.HasPrefix(b, []byte(arMagic)):
		return "deb"
	case isTar(b):
		return "tar"
	}
	return ""
}

// isTar reports whether b starts a tar archive: a ustar (POSIX or GNU)
// header, or a zero block, which is how an empty archive starts.
func isTar(b []byte) bool {
	if len(b) < 512 {
		return false
	}
	return bytes.HasPrefix(b[257:], []byte("ustar")) || bytes.Count(b[:512], []byte{0}) == 512
}

// extractTar decompresses a tar of the kind and walks its members.
func extractTar(ctx context.Context, r io.Reader, kind string, m *matcher, fn func(Member, io.Reader) error) error {
	var dec io.Reader
	switch kind {
	case "tar":
		dec = r
	case "tar.gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		dec = zr
	case "tar.zst":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		dec = zr
	case "tar.xz":
		zr, err := xz.NewReader(r)
		if err != nil {
			return fmt.Errorf("xz: %w", err)
		}
		dec = zr
	case "tar.bz2":
		dec = bzip2.NewReader(r)
	}
	if kind != "tar" {
		br := bufio.NewReaderSize(dec, 64<<10)
		head, err := br.Peek(512)
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: %w", kind, err)
		}
		if !isTar(head) {
			return fmt.Errorf("%s: the decompressed data is not a tar archive", kind)
		}
		dec = br
	}
	tr := tar.NewReader(dec)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) { // we check paths ourselves
			return fmt.Errorf("%s: %w", kind, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // pax_global_header, as git archive writes
		}
		name, err := cleanMember(hdr.Name)
		if err != nil {
			return err
		}
		mem := Member{Name: name, Mode: hdr.Mode & 0o7777, Size: hdr.Size, Type: hdr.Typeflag, Linkname: hdr.Linkname}
		switch hdr.Typeflag {
		case tar.TypeRegA:
			mem.Type = tar.TypeReg
		case tar.TypeLink:
			if mem.Linkname, err = cleanMember(hdr.Linkname); err != nil {
				return fmt.Errorf("hard link %s: %w", name, err)
			}
		}
		if name == "." || !m.match(name) {
			continue
		}
		var content io.Reader = tr
		if mem.Type != tar.TypeReg {
			content = strings.NewReader("")
		}
		if err := fn(mem, content); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

// extractZip spools a zip to a temporary file and walks its members.
func extractZip(ctx context.Context, r io.Reader, tmpDir string, m *matcher, fn func(Member, io.Reader) error) error {
	tmp, err := os.CreateTemp(tmpDir, "labbake-zip-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	size, err := io.Copy(tmp, r)
	if err != nil {
		return err
	}
	zr, err := zip.NewReader(tmp, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // we check paths ourselves
		return fmt.Errorf("zip: %w", err)
	}
	for _, zf := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		name, err := cleanMember(zf.Name)
		if err != nil {
			return err
		}
		if name == "." || !m.match(name) {
			continue
		}
		if err := zipMember(zf, name, fn); err != nil {
			return err
		}
	}
	return nil
}

// zipMember hands one zip member to fn.
func zipMember(zf *zip.File, name string, fn func(Member, io.Reader) error) error {
	mode := zf.Mode()
	mem := Member{Name: name, Mode: int64(iox.PermBits(mode)), Type: tar.TypeReg, Size: int64(zf.UncompressedSize64)}
	var content io.Reader = strings.NewReader("")
	switch {
	case mode.IsDir() || strings.HasSuffix(zf.Name, "/"):
		mem.Type, mem.Size = tar.TypeDir, 0
	case mode&fs.ModeSymlink != 0:
		rc, err := zf.Open()
		if err != nil {
			return fmt.Errorf("zip: %s: %w", name, err)
		}
		target, err := io.ReadAll(io.LimitReader(rc, 4096))
		rc.Close()
		if err != nil {
			return fmt.Errorf("zip: %s: %w", name, err)
		}
		mem.Type, mem.Size, mem.Linkname = tar.TypeSymlink, 0, string(target)
	case mode.IsRegular():
		rc, err := zf.Open()
		if err != nil {
			return fmt.Errorf("zip: %s: %w", name, err)
		}
		defer rc.Close()
		content = rc
	default:
		return fmt.Errorf("zip: %s: unsupported file type %s", name, mode.Type())
	}
	if err := fn(mem, content); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// cleanMember cleans an archive member's name: leading slashes and "./"
// go, "." and ".." elements resolve; a name that then leads out of the
// archive is an error. The archive's root itself is ".".
func cleanMember(name string) (string, error) {
	n := path.Clean(strings.TrimLeft(name, "/"))
	if n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("member %q leads out of the archive", name)
	}
	return n, nil
}

// matcher tracks which requested paths members matched, and remembers
// some member names for an error message.
type matcher struct {
	paths []string
	hit   []bool
	hint  []string // for a path not hit: a member whose name ends in /path
	names []string // the first members seen
	count int
}

func newMatcher(paths []string) (*matcher, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("no paths to extract")
	}
	m := &matcher{hit: make([]bool, len(paths)), hint: make([]string, len(paths))}
	for _, p := range paths {
		if strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("empty path to extract")
		}
		c, err := cleanMember(p)
		if err != nil {
			return nil, fmt.Errorf("path %q leads out of the archive", p)
		}
		m.paths = append(m.paths, c)
	}
	return m, nil
}

// match reports whether a member is wanted and marks the paths it matches.
func (m *matcher) match(name string) bool {
	m.count++
	if len(m.names) < 8 {
		m.names = append(m.names, name)
	}
	ok := false
	for i, p := range m.paths {
		if p == "." || name == p || strings.HasPrefix(name, p+"/") {
			m.hit[i], ok = true, true
		} else if m.hint[i] == "" && strings.HasSuffix(name, "/"+p) {
			m.hint[i] = name
		}
	}
	return ok
}

// missing lists the paths no member matched, each with a member it may
// have meant; "" if there are none.
func (m *matcher) missing() string {
	var b strings.Builder
	for i, p := range m.paths {
		if m.hit[i] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", p)
		if m.hint[i] != "" {
			fmt.Fprintf(&b, " (did you mean %q?)", m.hint[i])
		}
	}
	return b.String()
}

// some describes the members seen, for an error message.
func (m *matcher) some() string {
	if m.count == 0 {
		return "no members"
	}
	s := quoteList(m.names, len(m.names))
	if m.count > len(m.names) {
		s += fmt.Sprintf(" and %d more", m.count-len(m.names))
	}
	return fmt.Sprintf("%d members: %s", m.count, s)
}
