package tree

import (
	"archive/tar"
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// OCI whiteout markers.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// copyBufSize is the size of the buffer file contents are copied through.
const copyBufSize = 1 << 20

// maxSparseSize bounds the logical size of a sparse tar entry: a few bytes
// of sparse map can claim exabytes of holes.
const maxSparseSize = 64 << 30

// isSparse reports whether hdr is a GNU sparse file (old GNU or PAX form).
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// ApplyTar applies a tar stream as a layer. The stream may be plain or
// compressed with gzip, zstd, xz or bzip2 (detected by magic bytes).
//
// Regular file contents are streamed into blobDir (created when missing)
// as owned blobs, one file per entry, with generated names; whole 64 KiB
// blocks of zeros become holes, and a sparse entry may not claim more than
// 64 GiB. OCI whiteouts are
// honoured: ".wh.NAME" removes NAME from the lower layers, ".wh..wh..opq"
// removes the children its directory had in lower layers but keeps what
// this layer adds; other ".wh..wh.*" files are skipped. PAX xattrs
// ("SCHILY.xattr.*", "LIBARCHIVE.xattr.*") go to Entry.Xattrs; numeric
// owner, mode (with setuid/setgid/sticky), mtime (clamped to the epoch),
// device numbers and link targets are kept; owner names are ignored.
//
// Names are made relative (a leading "/" is dropped, as GNU tar does) and
// resolved inside the tree like Add does; an empty name, a name or hardlink
// target that leaves the root, and a hardlink to anything but a regular file
// are errors naming the entry, prefixed by name. Global PAX headers and
// unknown entry types are skipped. On error the tree holds the entries
// applied so far.
func (t *Tree) ApplyTar(r io.Reader, name, blobDir string) error {
	err := t.applyTar(r, blobDir)
	if err != nil && name != "" {
		return fmt.Errorf("%s: %w", name, err)
	}
	return err
}

func (t *Tree) applyTar(r io.Reader, blobDir string) error {
	dir, err := prepareBlobDir(blobDir)
	if err != nil {
		return err
	}
	dr, closeFn, err := decompress(r)
	if err != nil {
		return err
	}
	defer closeFn()

	tr := tar.NewReader(dr)
	layer := make(map[string]struct{})
	c := newCopier()
	var entries int
	var total int64
	last := ""
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if last == "" {
				return fmt.Errorf("reading tar: %w", err)
			}
			return fmt.Errorf("reading tar after entry %q: %w", last, err)
		}
		last = hdr.Name
		n, err := t.applyHeader(hdr, tr, dir, c, layer)
		if err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		entries++
		total += n
	}
	t.log.Debug("tree: applied tar layer", "entries", entries, "bytes", total, "tree_entries", t.Len())
	return nil
}

// applyHeader applies one tar entry; it returns the number of content bytes
// stored.
func (t *Tree) applyHeader(hdr *tar.Header, r io.Reader, blobDir string, c *copier, layer map[string]struct{}) (int64, error) {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		t.log.Debug("tree: skipping global PAX header", "name", hdr.Name)
		return 0, nil
	}
	p, err := cleanRel(hdr.Name)
	if err != nil {
		return 0, err
	}
	if p != "." {
		dir, base := splitLast(p)
		if strings.HasPrefix(base, whiteoutPrefix) {
			return 0, t.whiteout(dir, base, layer)
		}
	}
	if hdr.Uid < 0 || hdr.Gid < 0 {
		return 0, fmt.Errorf("negative owner %d:%d", hdr.Uid, hdr.Gid)
	}
	if hdr.Mode < 0 {
		return 0, fmt.Errorf("negative mode %#o", hdr.Mode)
	}
	xattrs, err := paxXattrs(hdr.PAXRecords)
	if err != nil {
		return 0, err
	}
	e := Entry{
		Path:    p,
		Mode:    uint32(hdr.Mode & 0o7777),
		UID:     hdr.Uid,
		GID:     hdr.Gid,
		ModTime: hdr.ModTime,
		Xattrs:  xattrs,
	}
	switch hdr.Typeflag {
	case tar.TypeReg, '\x00', tar.TypeCont, tar.TypeGNUSparse:
		e.Type = Regular
	case tar.TypeDir:
		e.Type = Dir
	case tar.TypeSymlink:
		e.Type = Symlink
		e.Linkname = hdr.Linkname
	case tar.TypeLink:
		e.Type = Hardlink
		e.Linkname = hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		e.Type = CharDev
		if hdr.Typeflag == tar.TypeBlock {
			e.Type = BlockDev
		}
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 1<<32-1 || hdr.Devminor > 1<<32-1 {
			return 0, fmt.Errorf("device numbers %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		e.Devmajor, e.Devminor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
	case tar.TypeFifo:
		e.Type = FIFO
	default:
		t.log.Debug("tree: skipping tar entry of unsupported type", "name", hdr.Name, "type", string(hdr.Typeflag))
		return 0, nil
	}
	if e.Type == Regular {
		// Check the path before spooling, so a bad entry costs no blob.
		if _, err := t.resolve(p); err != nil {
			return 0, err
		}
		if isSparse(hdr) && hdr.Size > maxSparseSize {
			return 0, fmt.Errorf("sparse file of %d bytes: larger than %d", hdr.Size, int64(maxSparseSize))
		}
		b, err := c.writeBlob(blobDir, r)
		if err != nil {
			return 0, err
		}
		e.Content = b
		if _, err := t.add(e, layer); err != nil {
			dropBlob(b)
			return 0, err
		}
		return b.Size, nil
	}
	_, err = t.add(e, layer)
	return 0, err
}

// whiteout applies the OCI whiteout file base found in dir.
func (t *Tree) whiteout(dir, base string, layer map[string]struct{}) error {
	rdir, err := t.resolveDir(dir)
	if err != nil {
		return err
	}
	if base == whiteoutOpaque {
		t.opaque(rdir, layer)
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if strings.HasPrefix(target, whiteoutPrefix) {
		t.log.Debug("tree: skipping whiteout metadata file", "path", join(rdir, base))
		return nil
	}
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("invalid whiteout %q", base)
	}
	p := join(rdir, target)
	if _, ok := layer[p]; ok {
		// A whiteout hides lower layers only, never its own layer.
		t.log.Debug("tree: whiteout of an entry of the same layer ignored", "path", p)
		return nil
	}
	t.removeTree(p)
	return nil
}

// opaque removes what lower layers put below dir, keeping what this layer
// added (and the directories leading to it).
func (t *Tree) opaque(dir string, layer map[string]struct{}) {
	n, ok := t.nodes[dir]
	if !ok || n.e.Type != Dir {
		return
	}
	for _, c := range sortedKids(n) {
		cn := t.nodes[c]
		if cn == nil {
			continue
		}
		if cn.e.Type == Dir {
			t.opaque(c, layer)
		}
		if _, ok := layer[c]; ok {
			continue
		}
		if cn.e.Type == Dir && len(cn.kids) > 0 {
			continue
		}
		t.removeTree(c)
	}
}

// paxXattrs extracts extended attributes from PAX records: SCHILY.xattr.NAME
// (raw value) and LIBARCHIVE.xattr.NAME (URL-encoded name, base64 value).
func paxXattrs(recs map[string]string) (map[string][]byte, error) {
	var x map[string][]byte
	for k, v := range recs {
		var name string
		var val []byte
		switch {
		case strings.HasPrefix(k, "SCHILY.xattr."):
			name = strings.TrimPrefix(k, "SCHILY.xattr.")
			val = []byte(v)
		case strings.HasPrefix(k, "LIBARCHIVE.xattr."):
			n, err := url.QueryUnescape(strings.TrimPrefix(k, "LIBARCHIVE.xattr."))
			if err != nil {
				return nil, fmt.Errorf("pax record %q: %w", k, err)
			}
			b, err := decodeBase64(v)
			if err != nil {
				return nil, fmt.Errorf("pax record %q: %w", k, err)
			}
			name, val = n, b
		default:
			continue
		}
		if name == "" {
			return nil, fmt.Errorf("pax record %q: empty xattr name", k)
		}
		if x == nil {
			x = make(map[string][]byte)
		}
		if _, dup := x[name]; dup && strings.HasPrefix(k, "LIBARCHIVE.") {
			continue // SCHILY wins when both are present
		}
		x[name] = val
	}
	return x, nil
}

// decodeBase64 accepts padded and unpadded standard base64 (libarchive
// writes it without padding).
func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// Magic bytes of the compressed formats ApplyTar detects.
const (
	magicGzip  = "\x1f\x8b"
	magicZstd  = "\x28\xb5\x2f\xfd"
	magicXz    = "\xfd7zXZ\x00"
	magicBzip2 = "BZh"
)

// decompress detects the compression of r by its magic bytes and returns
// the decompressed stream and a function releasing the decoder.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	peek, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("reading tar: %w", err)
	}
	magic := string(peek)
	nop := func() {}
	switch {
	case strings.HasPrefix(magic, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { _ = zr.Close() }, nil
	case strings.HasPrefix(magic, magicZstd):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	case strings.HasPrefix(magic, magicXz):
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("xz: %w", err)
		}
		return zr, nop, nil
	case strings.HasPrefix(magic, magicBzip2) && len(magic) >= 4 && magic[3] >= '1' && magic[3] <= '9':
		return bzip2.NewReader(br), nop, nil
	}
	return br, nop, nil
}
