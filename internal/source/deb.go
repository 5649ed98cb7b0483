package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A Debian binary package (deb(5)) is an ar archive holding, in order,
// debian-binary (the format version, "2.0\n"), control.tar[.gz|.xz|.zst]
// and data.tar[.gz|.xz|.zst|.bz2]; members whose names start with "_"
// (signatures such as _gpgbuilder) may come between and are skipped.

// arMagic starts an ar archive.
const arMagic = "!<arch>\n"

// arHeaderSize is the size of an ar member header: name 16, mtime 12,
// uid 6, gid 6, mode 8, size 10 and the magic "`\n".
const arHeaderSize = 60

// maxDebianBinary bounds the debian-binary member, which holds "2.0\n".
const maxDebianBinary = 64

// debDataKinds maps a .deb's data member to the tar kind extractTar takes.
var debDataKinds = map[string]string{
	"data.tar":     "tar",
	"data.tar.gz":  "tar.gz",
	"data.tar.xz":  "tar.xz",
	"data.tar.zst": "tar.zst",
	"data.tar.bz2": "tar.bz2",
}

// extractDeb walks the members of a Debian binary package's data.tar as
// extractTar walks a tar's. It reads the package up to the end of its
// data.tar and no further.
func extractDeb(ctx context.Context, r io.Reader, m *matcher, fn func(Member, io.Reader) error) error {
	var magic [len(arMagic)]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != arMagic {
		return fmt.Errorf("deb: not an ar archive")
	}
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := readArHeader(r)
		if err == io.EOF {
			if i == 0 {
				return fmt.Errorf("deb: no debian-binary member: the archive is empty")
			}
			return fmt.Errorf("deb: no data.tar member")
		}
		if err != nil {
			return fmt.Errorf("deb: %w", err)
		}
		body := &arMember{r: r, name: h.name, size: h.size, left: h.size}
		switch {
		case i == 0:
			if h.name != "debian-binary" {
				return fmt.Errorf("deb: the first member is %q, want debian-binary", h.name)
			}
			if h.size > maxDebianBinary {
				return fmt.Errorf("deb: debian-binary is %d bytes, want at most %d", h.size, maxDebianBinary)
			}
			v, err := io.ReadAll(body)
			if err != nil {
				return fmt.Errorf("deb: %w", err)
			}
			if !strings.HasPrefix(string(v), "2.") {
				return fmt.Errorf("deb: debian-binary says %q, want 2.x", v)
			}
		case strings.HasPrefix(h.name, "data.tar"):
			kind, ok := debDataKinds[h.name]
			if !ok {
				return fmt.Errorf("deb: %s: unsupported compression (want data.tar, data.tar.gz, .xz, .zst or .bz2)", h.name)
			}
			if err := extractTar(ctx, body, kind, m, fn); err != nil {
				return fmt.Errorf("deb: %s: %w", h.name, err)
			}
			// The tar may end before its member does (padding, a
			// compressor's trailer): read the member to its end so that a
			// truncated one is an error. Extract reads on to the blob's end.
			if _, err := io.Copy(io.Discard, body); err != nil {
				return fmt.Errorf("deb: %w", err)
			}
			return nil
		case strings.HasPrefix(h.name, "control.tar"), strings.HasPrefix(h.name, "_"):
			// Not wanted: skipped below.
		default:
			return fmt.Errorf("deb: unexpected member %q (want debian-binary, control.tar.*, data.tar.* or _*)", h.name)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return fmt.Errorf("deb: %w", err)
		}
		if h.size%2 == 1 { // data is padded to an even length
			var pad [1]byte
			if _, err := io.ReadFull(r, pad[:]); err != nil && err != io.EOF {
				return fmt.Errorf("deb: %s: %w", h.name, err)
			}
		}
	}
}

// arHeader is the part of an ar member header extractDeb uses.
type arHeader struct {
	name string
	size int64
}

// readArHeader reads an ar member header. It returns io.EOF if the archive
// ends cleanly before it.
func readArHeader(r io.Reader) (arHeader, error) {
	var b [arHeaderSize]byte
	n, err := io.ReadFull(r, b[:])
	switch {
	case err == io.EOF:
		return arHeader{}, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return arHeader{}, fmt.Errorf("truncated member header (%d of %d bytes)", n, arHeaderSize)
	case err != nil:
		return arHeader{}, err
	}
	// GNU ar ends names with "/"; dpkg-deb pads them with spaces.
	name := strings.TrimSuffix(strings.TrimRight(string(b[:16]), " "), "/")
	if string(b[58:60]) != "`\n" {
		return arHeader{}, fmt.Errorf("member %q: bad header (it ends in %q, want \"`\\n\")", name, b[58:60])
	}
	field := strings.TrimRight(string(b[48:58]), " ")
	if field == "" || strings.Trim(field, "0123456789") != "" {
		return arHeader{}, fmt.Errorf("member %q: size %q is not a decimal number", name, field)
	}
	size, err := strconv.ParseInt(field, 10, 64) // at most 10 digits: no overflow
	if err != nil {
		return arHeader{}, fmt.Errorf("member %q: size %q: %w", name, field, err)
	}
	return arHeader{name: name, size: size}, nil
}

// arMember reads an ar member's data: exactly size bytes from r, the
// archive, or an error if the archive ends before them.
type arMember struct {
	r          io.Reader
	name       string
	size, left int64
}

func (a *arMember) Read(p []byte) (int, error) {
	if a.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > a.left {
		p = p[:a.left]
	}
	n, err := a.r.Read(p)
	a.left -= int64(n)
	switch {
	case err == io.EOF && a.left > 0:
		err = fmt.Errorf("member %q is truncated: %d of %d bytes: %w", a.name, a.size-a.left, a.size, io.ErrUnexpectedEOF)
	case err == io.EOF:
		err = nil // the next Read says io.EOF
	}
	return n, err
}
