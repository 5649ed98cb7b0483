package qcow2

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Compression is how Write compresses data clusters.
type Compression uint8

const (
	// NoCompression stores every data cluster as is.
	NoCompression Compression = iota
	// Zlib stores raw deflate streams: QEMU's compression type "zlib",
	// the default, which every qcow2 reader knows.
	Zlib
	// Zstd stores one Zstandard frame per cluster: QEMU's compression type
	// "zstd" (QEMU 5.1 and later), faster to write and to read than zlib,
	// and smaller.
	Zstd
)

// String returns QEMU's name of the compression type ("zlib", "zstd"), or
// "none".
func (c Compression) String() string {
	switch c {
	case NoCompression:
		return "none"
	case Zlib:
		return "zlib"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// ParseCompression parses QEMU's name of a compression type: "zlib" (or
// "deflate"), "zstd"; "none" is NoCompression.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "none":
		return NoCompression, nil
	case "zlib", "deflate":
		return Zlib, nil
	case "zstd":
		return Zstd, nil
	}
	return NoCompression, fmt.Errorf("unknown compression %q (want zlib, deflate, zstd or none)", s)
}

// Options for Write and Create.
type Options struct {
	// ClusterSize is a power of two from 512 to 2 MiB; 0 means 65536.
	ClusterSize int
	// Compress makes Write store each data cluster compressed when that
	// makes it smaller (strictly smaller than a cluster, as QEMU does);
	// other clusters are stored as is. With Zstd the header records the
	// compression type (an image with compression type zstd, even one made
	// by Create, needs a reader that knows zstd); Zlib and NoCompression
	// write the same header.
	Compress Compression
	// BackingFile is recorded in the header, as is (QEMU resolves a relative
	// name against the image's directory). Write with a backing file marks
	// every cluster it does not allocate as a zero cluster, so the image
	// still reads as the source whatever the backing file holds.
	BackingFile string
	// BackingFormat (e.g. "qcow2") is written as the backing format header
	// extension; it needs BackingFile.
	BackingFormat string
	// TempDir is where Write spills compressed data beyond its memory budget;
	// "" means os.TempDir(). The file is unlinked as soon as it is made.
	TempDir string

	spillLimit int // memory budget for compressed data; 0 means defaultSpillLimit
}

const (
	defaultSpillLimit = 64 << 20
	chunkSize         = 4 << 20 // bytes read from the source at a time
	compressChunk     = 1 << 20 // bytes compressed by one job
	maxWorkers        = 16      // compressing goroutines
)

// Write converts the raw image src of size bytes to a qcow2 image written
// front to back to dst. The virtual size is size rounded up to a multiple
// of 512 bytes, as QEMU does for raw images; bytes past the end of src read
// as zeros.
//
// All-zero clusters are not allocated. When src is an *os.File, holes are
// skipped without reading them (SEEK_DATA/SEEK_HOLE, which moves the file
// offset); src is otherwise read only with ReadAt. The output depends only
// on the bytes of src and on opts.
func Write(ctx context.Context, dst io.Writer, src io.ReaderAt, size int64, opts Options) error {
	if err := write(ctx, dst, src, size, opts, false); err != nil {
		return fmt.Errorf("qcow2: writing image: %w", err)
	}
	return nil
}

// Create writes an image of virtual size size (rounded up to a multiple of
// 512) with no data clusters: with opts.BackingFile set, this is a thin
// overlay that reads through to its backing file.
func Create(dst io.Writer, size int64, opts Options) error {
	if err := write(context.Background(), dst, nil, size, opts, true); err != nil {
		return fmt.Errorf("qcow2: creating image: %w", err)
	}
	return nil
}

// alloc is one allocated virtual cluster; clen is the length of its
// compressed data, or 0 when it is stored uncompressed.
type alloc struct {
	vc   int64
	clen int64
}

// layout places every part of the output file, in clusters unless said
// otherwise. The parts follow each other in this order.
type layout struct {
	l1, l1c     int64 // L1 table: first cluster, clusters (none for an empty disk, as QEMU does)
	rt, rtc     int64 // refcount table
	rb, rbc     int64 // refcount blocks
	l2, l2c     int64 // L2 tables
	raw, rawc   int64 // uncompressed data clusters
	comp, compc int64 // clusters holding compressed data, packed back to back
	total       int64 // clusters in the file; the last one may be partial

	l1Size      int64    // L1 entries
	withL2      []bool   // per L1 entry: whether it has an L2 table
	vclusters   int64    // virtual clusters
	zeroUnalloc bool     // mark unallocated clusters with the zero flag
	compBytes   int64    // bytes of compressed data
	compCounts  []uint16 // refcount of each compressed-data cluster
}

func write(ctx context.Context, dst io.Writer, src io.ReaderAt, size int64, opts Options, create bool) error {
	g, err := optsGeometry(opts)
	if err != nil {
		return err
	}
	if size < 0 || size > maxVirtualSize {
		return fmt.Errorf("virtual size %d out of range", size)
	}
	vsize := alignUp(size, sectorSize)
	if g.l1Needed(vsize)*8 > maxL1Bytes {
		return fmt.Errorf("virtual size %d too large for cluster size %d", vsize, g.cs)
	}
	hdr, h, err := headerCluster(g, opts)
	if err != nil {
		return err
	}
	var allocs []alloc
	sp := &spill{limit: opts.spillLimit, dir: opts.TempDir}
	if sp.limit == 0 {
		sp.limit = defaultSpillLimit
	}
	defer sp.close()
	if !create {
		exts := dataExtents(src, size, g.cs)
		if opts.Compress != NoCompression {
			allocs, err = scanCompress(ctx, src, size, exts, g, opts.Compress, sp)
		} else {
			allocs, err = scan(ctx, src, size, exts, g)
		}
		if err != nil {
			return err
		}
	}
	lay, err := plan(g, vsize, allocs, !create && opts.BackingFile != "")
	if err != nil {
		return err
	}
	h.size = uint64(vsize)
	h.l1Size = uint32(lay.l1Size)
	if lay.l1c > 0 {
		h.l1Off = uint64(lay.l1 * g.cs)
	}
	h.refTableOff = uint64(lay.rt * g.cs)
	h.refTableCluster = uint32(lay.rtc)
	h.marshal(hdr)

	w := bufio.NewWriterSize(dst, 1<<20)
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	if err := emitMetadata(w, g, lay, allocs); err != nil {
		return err
	}
	if err := emitRaw(ctx, w, src, size, g, allocs); err != nil {
		return err
	}
	if err := sp.writeTo(w); err != nil {
		return err
	}
	if pad := alignUp(lay.compBytes, sectorSize) - lay.compBytes; pad > 0 {
		if _, err := w.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	return w.Flush()
}

func optsGeometry(opts Options) (geometry, error) {
	cs := opts.ClusterSize
	if cs == 0 {
		cs = defaultClusterSize
	}
	if cs < 1<<minClusterBits || cs > 1<<maxClusterBits || cs&(cs-1) != 0 {
		return geometry{}, fmt.Errorf("cluster size %d is not a power of two from 512 to 2 MiB", cs)
	}
	if opts.BackingFormat != "" && opts.BackingFile == "" {
		return geometry{}, errors.New("backing format given without a backing file")
	}
	if opts.Compress > Zstd {
		return geometry{}, fmt.Errorf("unknown compression %v", opts.Compress)
	}
	if len(opts.BackingFile) > maxBackingName {
		return geometry{}, fmt.Errorf("backing file name longer than %d bytes", maxBackingName)
	}
	return newGeometry(uint(bits.TrailingZeros(uint(cs)))), nil
}

// headerCluster builds the header cluster: header, extensions, backing name.
func headerCluster(g geometry, opts Options) ([]byte, *header, error) {
	b := make([]byte, g.cs)
	h := &header{version: 3, clusterBits: uint32(g.bits), refcountOrder: refcountOrder, headerLen: headerLenV3}
	if opts.Compress == Zstd {
		// compression_type follows the 104-byte header, with the
		// incompatible feature bit that says it is not zlib.
		h.headerLen = headerLenZstd
		h.compressionType = compressionZstd
		h.incompatible |= incompatCompression
	}
	off := int64(h.headerLen)
	ext := func(typ uint32, data []byte) error {
		n := 8 + alignUp(int64(len(data)), 8)
		if off+n > g.cs {
			return errors.New("header extensions do not fit in the header cluster")
		}
		binary.BigEndian.PutUint32(b[off:], typ)
		binary.BigEndian.PutUint32(b[off+4:], uint32(len(data)))
		copy(b[off+8:], data)
		off += n
		return nil
	}
	if opts.BackingFormat != "" {
		if err := ext(extBackingFormat, []byte(opts.BackingFormat)); err != nil {
			return nil, nil, err
		}
	}
	if err := ext(extEnd, nil); err != nil {
		return nil, nil, err
	}
	if name := opts.BackingFile; name != "" {
		if off+int64(len(name)) > g.cs {
			return nil, nil, errors.New("backing file name does not fit in the header cluster")
		}
		h.backingOff, h.backingLen = uint64(off), uint32(len(name))
		copy(b[off:], name)
	}
	return b, h, nil
}

// plan places every part of the file and counts the references to the
// clusters holding compressed data.
func plan(g geometry, vsize int64, allocs []alloc, zeroUnalloc bool) (*layout, error) {
	lay := &layout{zeroUnalloc: zeroUnalloc, vclusters: ceilDiv(vsize, g.cs)}
	lay.l1Size = g.l1Needed(vsize)
	lay.l1c = ceilDiv(lay.l1Size*8, g.cs)
	lay.withL2 = make([]bool, lay.l1Size)
	for i := range lay.withL2 {
		lay.withL2[i] = zeroUnalloc
	}
	for _, a := range allocs {
		lay.withL2[a.vc/g.l2Entries] = true
		if a.clen == 0 {
			lay.rawc++
			continue
		}
		// Every host cluster touched by compressed data counts one
		// reference per compressed cluster touching it.
		for c := lay.compBytes / g.cs; c <= (lay.compBytes+a.clen-1)/g.cs; c++ {
			if c == int64(len(lay.compCounts)) {
				lay.compCounts = append(lay.compCounts, 0)
			}
			if lay.compCounts[c] == maxRefcount {
				return nil, errors.New("refcount overflow in compressed data")
			}
			lay.compCounts[c]++
		}
		lay.compBytes += a.clen
	}
	for _, has := range lay.withL2 {
		if has {
			lay.l2c++
		}
	}
	lay.compc = int64(len(lay.compCounts))
	base := 1 + lay.l1c + lay.l2c + lay.rawc + lay.compc
	lay.rtc, lay.rbc = 1, 1
	perBlock := g.cs * 8 / (1 << refcountOrder)
	for {
		rbc := ceilDiv(base+lay.rtc+lay.rbc, perBlock)
		rtc := ceilDiv(rbc*8, g.cs)
		if rbc <= lay.rbc && rtc <= lay.rtc {
			break
		}
		lay.rbc, lay.rtc = max(rbc, lay.rbc), max(rtc, lay.rtc)
	}
	if lay.rtc*g.cs > maxRefTableBytes {
		return nil, errors.New("image too large for the refcount table; use a larger cluster size")
	}
	lay.l1 = 1
	lay.rt = lay.l1 + lay.l1c
	lay.rb = lay.rt + lay.rtc
	lay.l2 = lay.rb + lay.rbc
	lay.raw = lay.l2 + lay.l2c
	lay.comp = lay.raw + lay.rawc
	lay.total = lay.comp + lay.compc
	if (lay.comp*g.cs+lay.compBytes)>>g.csizeShift != 0 {
		return nil, errors.New("compressed data beyond the addressable offset")
	}

	return lay, nil
}

// emitMetadata writes the L1 table, the refcount table and blocks, and the
// L2 tables.
func emitMetadata(w io.Writer, g geometry, lay *layout, allocs []alloc) error {
	be := binary.BigEndian
	// L1 table.
	tbl := make([]byte, lay.l1c*g.cs)
	n := int64(0)
	for i, has := range lay.withL2 {
		if has {
			be.PutUint64(tbl[i*8:], uint64((lay.l2+n)*g.cs)|flagCopied)
			n++
		}
	}
	if _, err := w.Write(tbl); err != nil {
		return err
	}
	// Refcount table.
	tbl = make([]byte, lay.rtc*g.cs)
	for i := int64(0); i < lay.rbc; i++ {
		be.PutUint64(tbl[i*8:], uint64((lay.rb+i)*g.cs))
	}
	if _, err := w.Write(tbl); err != nil {
		return err
	}
	// Refcount blocks: one reference for every cluster before the
	// compressed data, the counted references inside it.
	blk := make([]byte, g.cs)
	perBlock := g.cs / 2
	for b := int64(0); b < lay.rbc; b++ {
		clear(blk)
		for i := int64(0); i < perBlock; i++ {
			c := b*perBlock + i
			switch {
			case c < lay.comp:
				be.PutUint16(blk[i*2:], 1)
			case c < lay.total:
				be.PutUint16(blk[i*2:], lay.compCounts[c-lay.comp])
			}
		}
		if _, err := w.Write(blk); err != nil {
			return err
		}
	}
	// L2 tables, in L1 order; raw and compressed data follow in virtual
	// cluster order.
	rawNext := lay.raw * g.cs
	compNext := lay.comp * g.cs
	k := 0
	for i, has := range lay.withL2 {
		if !has {
			continue
		}
		clear(blk)
		first := int64(i) * g.l2Entries
		if lay.zeroUnalloc {
			for j := int64(0); j < g.l2Entries && first+j < lay.vclusters; j++ {
				be.PutUint64(blk[j*8:], flagZero)
			}
		}
		for ; k < len(allocs) && allocs[k].vc < first+g.l2Entries; k++ {
			a := allocs[k]
			var e uint64
			if a.clen == 0 {
				e = uint64(rawNext) | flagCopied
				rawNext += g.cs
			} else {
				e = g.compressedEntry(compNext, a.clen)
				compNext += a.clen
			}
			be.PutUint64(blk[(a.vc-first)*8:], e)
		}
		if _, err := w.Write(blk); err != nil {
			return err
		}
	}
	return nil
}

// emitRaw copies the uncompressed allocated clusters from src, in virtual
// cluster order, reading runs of adjacent clusters at once. A goroutine
// reads the next run while the current one is written.
func emitRaw(ctx context.Context, w io.Writer, src io.ReaderAt, size int64, g geometry, allocs []alloc) error {
	ctx, cancel := context.WithCancel(ctx)
	type piece struct {
		p   []byte
		err error
	}
	full := make(chan piece)
	defer func() {
		cancel()
		for range full { // wait for the reader to stop using src
		}
	}()
	maxRun := max(chunkSize/g.cs, 1)
	free := make(chan []byte, 2)
	free <- make([]byte, maxRun*g.cs)
	free <- make([]byte, maxRun*g.cs)
	go func() {
		defer close(full)
		for i := 0; i < len(allocs); {
			if allocs[i].clen != 0 {
				i++
				continue
			}
			j := i + 1
			for j < len(allocs) && int64(j-i) < maxRun && allocs[j].clen == 0 && allocs[j].vc == allocs[j-1].vc+1 {
				j++
			}
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			p := buf[:int64(j-i)*g.cs]
			err := readChunk(src, p, allocs[i].vc*g.cs, size)
			select {
			case full <- piece{p, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			i = j
		}
	}()
	for pc := range full {
		if pc.err != nil {
			return pc.err
		}
		if _, err := w.Write(pc.p); err != nil {
			return err
		}
		free <- pc.p
	}
	return ctx.Err()
}
