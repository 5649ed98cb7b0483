package qcow2

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Image is an opened qcow2 image (version 2 or 3, zlib or zstd compression,
// no encryption, no external data file). It reads the active disk only:
// snapshots are ignored and the backing file is not followed. Its ReadAt is
// safe for concurrent use.
type Image struct {
	r          io.ReaderAt
	fileSize   int64
	g          geometry
	version    uint32
	size       int64
	l1         []uint64 // the entries mapping the virtual size
	backing    string
	backingFmt string
	comp       Compression // of compressed clusters: Zlib or Zstd
	inflaters  sync.Pool   // of *inflater
}

type inflater struct {
	br *bufio.Reader
	fr io.ReadCloser
}

// Open reads and validates the header, the L1 table and every L2 table of
// the image in r, which is fileSize bytes long. It returns an error, never
// panics, on any malformed input; memory use is bounded by fileSize (plus
// a few buffers), whatever the header says.
func Open(r io.ReaderAt, fileSize int64) (*Image, error) {
	im, err := open(r, fileSize)
	if err != nil {
		return nil, fmt.Errorf("qcow2: opening image: %w", err)
	}
	return im, nil
}

func open(r io.ReaderAt, fileSize int64) (*Image, error) {
	if fileSize < headerLenV2 {
		return nil, errors.New("file too small for a header")
	}
	b := make([]byte, headerLenV2)
	if err := readFull(r, b, 0); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint32(b) != magic {
		return nil, errors.New("bad magic: not a qcow2 image")
	}
	bits := binary.BigEndian.Uint32(b[20:])
	if bits < minClusterBits || bits > maxClusterBits {
		return nil, fmt.Errorf("cluster bits %d out of range %d..%d", bits, minClusterBits, maxClusterBits)
	}
	g := newGeometry(uint(bits))
	// The header, its extensions and the backing file name live in the
	// first cluster.
	b = make([]byte, min(fileSize, g.cs))
	if err := readFull(r, b, 0); err != nil {
		return nil, err
	}
	h, err := unmarshalHeader(b)
	if err != nil {
		return nil, err
	}
	im := &Image{r: r, fileSize: fileSize, g: g, version: h.version}
	if err := im.checkHeader(&h); err != nil {
		return nil, err
	}
	if err := im.readExtensions(b, &h); err != nil {
		return nil, err
	}
	if err := im.readTables(&h); err != nil {
		return nil, err
	}
	return im, nil
}

func (im *Image) checkHeader(h *header) error {
	g := im.g
	if unknown := h.incompatible &^ (incompatDirty | incompatCorrupt | incompatCompression); unknown != 0 {
		return fmt.Errorf("unsupported incompatible features %#x", unknown)
	}
	// As QEMU checks it: the compression type bit is set exactly when the
	// type is not zlib.
	switch bit := h.incompatible&incompatCompression != 0; {
	case h.compressionType > compressionZstd:
		return fmt.Errorf("unsupported compression type %d (known: 0 zlib, 1 zstd)", h.compressionType)
	case h.compressionType == compressionZstd && !bit:
		return errors.New("compression type zstd without the compression type feature bit")
	case h.compressionType == compressionZlib && bit:
		return errors.New("compression type feature bit set, but the compression type is zlib or absent")
	}
	im.comp = Zlib
	if h.compressionType == compressionZstd {
		im.comp = Zstd
	}
	if h.cryptMethod != 0 {
		return errors.New("encrypted images are not supported")
	}
	if h.refcountOrder > 6 {
		return fmt.Errorf("refcount order %d above 6", h.refcountOrder)
	}
	if h.size > maxVirtualSize {
		return fmt.Errorf("virtual size %d too large", h.size)
	}
	im.size = int64(h.size)
	if int64(h.l1Size)*8 > maxL1Bytes {
		return fmt.Errorf("L1 table of %d entries too large", h.l1Size)
	}
	need := g.l1Needed(im.size)
	if int64(h.l1Size) < need {
		return fmt.Errorf("L1 table of %d entries too small for virtual size %d", h.l1Size, im.size)
	}
	if err := im.checkTable("L1 table", h.l1Off, int64(h.l1Size)*8); err != nil {
		return err
	}
	if h.refTableCluster == 0 {
		return errors.New("empty refcount table")
	}
	if err := im.checkTable("refcount table", h.refTableOff, int64(h.refTableCluster)*g.cs); err != nil {
		return err
	}
	if h.nbSnapshots > 0 {
		if err := im.checkTable("snapshot table", h.snapshotsOff, 1); err != nil {
			return err
		}
	}
	return nil
}

// checkTable checks that a table of n bytes at off is cluster aligned, is
// not the header and lies inside the file.
func (im *Image) checkTable(what string, off uint64, n int64) error {
	if n == 0 {
		return nil
	}
	if off%uint64(im.g.cs) != 0 || off == 0 {
		return fmt.Errorf("%s offset %#x not a non-zero multiple of the cluster size", what, off)
	}
	if off >= uint64(im.fileSize) || n > im.fileSize-int64(off) {
		return fmt.Errorf("%s at %#x (%d bytes) beyond the end of the file", what, off, n)
	}
	return nil
}

// readExtensions reads the header extensions and the backing file name
// from the header cluster b.
func (im *Image) readExtensions(b []byte, h *header) error {
	be := binary.BigEndian
	end := int64(len(b))
	if h.backingOff != 0 {
		if h.backingOff < uint64(h.headerLen) || h.backingLen > maxBackingName ||
			h.backingOff+uint64(h.backingLen) > uint64(len(b)) {
			return fmt.Errorf("backing file name at %d (%d bytes) outside the header cluster", h.backingOff, h.backingLen)
		}
		im.backing = string(b[h.backingOff : h.backingOff+uint64(h.backingLen)])
		end = int64(h.backingOff)
	}
	for off := int64(h.headerLen); off+8 <= end; {
		typ, n := be.Uint32(b[off:]), int64(be.Uint32(b[off+4:]))
		if typ == extEnd {
			break
		}
		if n > end-off-8 {
			return fmt.Errorf("header extension %#x at %d overruns the header", typ, off)
		}
		if typ == extBackingFormat {
			im.backingFmt = string(b[off+8 : off+8+n])
		}
		off += 8 + alignUp(n, 8)
	}
	return nil
}

// readTables reads the L1 table and checks every entry of it and of the L2
// tables it points to. Each distinct L2 table is read once, so the work is
// bounded by the file size.
func (im *Image) readTables(h *header) error {
	g := im.g
	n := g.l1Needed(im.size)
	raw := make([]byte, n*8)
	if err := readFull(im.r, raw, int64(h.l1Off)); err != nil {
		return fmt.Errorf("reading L1 table: %w", err)
	}
	im.l1 = make([]uint64, n)
	seen := make(map[int64]bool)
	tbl := make([]byte, g.cs)
	for i := range im.l1 {
		e := binary.BigEndian.Uint64(raw[i*8:])
		im.l1[i] = e
		off, err := im.l2Offset(e)
		if err != nil {
			return fmt.Errorf("L1 entry %d: %w", i, err)
		}
		if off == 0 || seen[off] {
			continue
		}
		seen[off] = true
		if err := readFull(im.r, tbl, off); err != nil {
			return fmt.Errorf("reading L2 table at %#x: %w", off, err)
		}
		for j := int64(0); j < g.l2Entries; j++ {
			if _, _, err := im.checkL2(binary.BigEndian.Uint64(tbl[j*8:])); err != nil {
				return fmt.Errorf("L2 table at %#x entry %d: %w", off, j, err)
			}
		}
	}
	return nil
}

// l2Offset checks an L1 entry and returns the offset of its L2 table, 0 if
// none.
func (im *Image) l2Offset(e uint64) (int64, error) {
	if e&l1Reserved != 0 {
		return 0, fmt.Errorf("reserved bits set in %#x", e)
	}
	off := int64(e & offsetMask)
	if off == 0 {
		return 0, nil
	}
	if off%im.g.cs != 0 || off > im.fileSize-im.g.cs {
		return 0, fmt.Errorf("L2 table offset %#x unaligned or beyond the end of the file", off)
	}
	return off, nil
}

// Kinds of L2 entries.
const (
	clusterUnallocated = iota
	clusterZero
	clusterNormal
	clusterCompressed
)

// checkL2 checks an L2 entry and returns its kind and host offset.
func (im *Image) checkL2(e uint64) (kind int, off int64, err error) {
	if e&flagCompressed != 0 {
		if e&flagCopied != 0 {
			return 0, 0, errors.New("compressed cluster with the copied flag")
		}
		off, _ = im.g.parseCompressed(e)
		if off == 0 || off >= im.fileSize {
			return 0, 0, fmt.Errorf("compressed data offset %#x outside the file", off)
		}
		return clusterCompressed, off, nil
	}
	reserved := uint64(l2Reserved)
	if im.version < 3 {
		reserved |= flagZero
	}
	if e&reserved != 0 {
		return 0, 0, fmt.Errorf("reserved bits set in %#x", e)
	}
	off = int64(e & offsetMask)
	if off != 0 && (off%im.g.cs != 0 || off >= im.fileSize) {
		return 0, 0, fmt.Errorf("cluster offset %#x unaligned or beyond the end of the file", off)
	}
	switch {
	case e&flagZero != 0:
		return clusterZero, 0, nil
	case off == 0:
		return clusterUnallocated, 0, nil
	}
	return clusterNormal, off, nil
}

// Size returns the virtual size in bytes.
func (im *Image) Size() int64 { return im.size }

// ClusterSize returns the cluster size in bytes.
func (im *Image) ClusterSize() int { return int(im.g.cs) }

// BackingFile returns the backing file name recorded in the header, "" if
// none. ReadAt does not follow it.
func (im *Image) BackingFile() string { return im.backing }

// BackingFormat returns the backing format header extension, "" if none.
func (im *Image) BackingFormat() string { return im.backingFmt }

// CompressionType returns the compression type of the header: Zlib (also
// when the image has no compressed cluster) or Zstd.
func (im *Image) CompressionType() Compression { return im.comp }

// ReadAt reads the virtual disk. Unallocated clusters read as zeros: a
// backing file is not followed. Compressed clusters are decompressed.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("qcow2: negative offset")
	}
	if off >= im.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), im.size-off))
	g := im.g
	var entries []byte // L2 entries, reused
	for done := 0; done < n; {
		pos := off + int64(done)
		vc := pos / g.cs
		in := pos % g.cs
		m := int(min(g.cs-in, int64(n-done)))
		// Read the L2 entries of the rest of the request within this L2
		// table at once.
		idx := vc % g.l2Entries
		cnt := min(g.l2Entries-idx, (int64(n-done)+in+g.cs-1)/g.cs)
		l2, err := im.l2Offset(im.l1[vc/g.l2Entries])
		if err != nil {
			return done, fmt.Errorf("qcow2: reading at %d: %w", pos, err)
		}
		if l2 == 0 {
			span := int(min(int64(n-done), cnt*g.cs-in))
			clear(p[done : done+span])
			done += span
			continue
		}
		if int64(cap(entries)) < cnt*8 {
			entries = make([]byte, cnt*8)
		}
		entries = entries[:cnt*8]
		if err := readFull(im.r, entries, l2+idx*8); err != nil {
			return done, fmt.Errorf("qcow2: reading L2 table: %w", err)
		}
		for k := int64(0); k < cnt && done < n; k++ {
			if err := im.readCluster(p[done:done+m], binary.BigEndian.Uint64(entries[k*8:]), in); err != nil {
				return done, fmt.Errorf("qcow2: reading at %d: %w", off+int64(done), err)
			}
			done += m
			in = 0
			m = int(min(g.cs, int64(n-done)))
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readCluster fills p with the data of the cluster described by L2 entry e,
// starting at offset in inside the cluster.
func (im *Image) readCluster(p []byte, e uint64, in int64) error {
	kind, off, err := im.checkL2(e)
	if err != nil {
		return err
	}
	switch kind {
	case clusterNormal:
		// The last cluster may end past the end of the file, as QEMU
		// writes it; the rest reads as zeros.
		return readZeroFill(im.r, p, off+in, im.fileSize)
	case clusterCompressed:
		if im.comp == Zstd {
			off, n := im.g.parseCompressed(e)
			n = min(n, im.fileSize-off) // the last sector may be cut short
			if err := unzstd(p, io.NewSectionReader(im.r, off, n), in); err != nil {
				return fmt.Errorf("corrupt zstd-compressed cluster at %#x: %w", off, err)
			}
			return nil
		}
		return im.inflate(p, e, in)
	}
	clear(p)
	return nil
}

func (im *Image) inflate(p []byte, e uint64, in int64) error {
	off, n := im.g.parseCompressed(e)
	n = min(n, im.fileSize-off) // the last sector may be cut short
	inf, _ := im.inflaters.Get().(*inflater)
	sr := io.NewSectionReader(im.r, off, n)
	if inf == nil {
		inf = &inflater{br: bufio.NewReaderSize(sr, 16<<10)}
		inf.fr = flate.NewReader(inf.br)
	} else {
		inf.br.Reset(sr)
		if err := inf.fr.(flate.Resetter).Reset(inf.br, nil); err != nil {
			return err
		}
	}
	defer im.inflaters.Put(inf)
	if _, err := io.CopyN(io.Discard, inf.fr, in); err != nil {
		return fmt.Errorf("corrupt compressed cluster at %#x: %w", off, err)
	}
	if _, err := io.ReadFull(inf.fr, p); err != nil {
		return fmt.Errorf("corrupt compressed cluster at %#x: %w", off, err)
	}
	return nil
}

// readFull reads len(p) bytes at off; a short read is an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readZeroFill reads p at off, with zeros past fileSize.
func readZeroFill(r io.ReaderAt, p []byte, off, fileSize int64) error {
	n := int(max(0, min(int64(len(p)), fileSize-off)))
	clear(p[n:])
	return readFull(r, p[:n], off)
}
