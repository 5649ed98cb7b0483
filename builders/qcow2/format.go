package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// On-disk constants of the qcow2 format (docs/interop/qcow2.txt in QEMU).
const (
	magic = 0x514649fb // "QFI\xfb"

	headerLenV2 = 72
	headerLenV3 = 104
	// headerLenZstd is the version 3 header with the compression_type
	// byte at offset 104, padded to a multiple of 8 as the spec requires
	// (QEMU writes this length for every image it creates).
	headerLenZstd = 112

	minClusterBits     = 9
	maxClusterBits     = 21
	defaultClusterSize = 1 << 16

	refcountOrder = 4 // 16-bit refcounts
	maxRefcount   = 1<<16 - 1

	maxL1Bytes       = 32 << 20 // QEMU's QCOW_MAX_L1_SIZE
	maxRefTableBytes = 8 << 20  // QEMU's QCOW_MAX_REFTABLE_SIZE
	maxBackingName   = 1023
	maxVirtualSize   = 1 << 61

	flagCopied     = 1 << 63 // refcount is exactly one
	flagCompressed = 1 << 62
	flagZero       = 1 // L2 entry reads as zeros (version 3)

	offsetMask = 0x00ff_ffff_ffff_fe00 // host offset bits of L1 and standard L2 entries
	l1Reserved = 0x7f00_0000_0000_01ff
	l2Reserved = 0x3f00_0000_0000_01fe // bit 0 is the zero flag in version 3

	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca

	incompatDirty       = 1 << 0
	incompatCorrupt     = 1 << 1
	incompatCompression = 1 << 3 // compression_type is present and not zlib

	// Values of compression_type.
	compressionZlib = 0
	compressionZstd = 1

	sectorSize = 512
)

// header is the fixed part of a qcow2 header.
type header struct {
	version         uint32
	backingOff      uint64
	backingLen      uint32
	clusterBits     uint32
	size            uint64
	cryptMethod     uint32
	l1Size          uint32
	l1Off           uint64
	refTableOff     uint64
	refTableCluster uint32
	nbSnapshots     uint32
	snapshotsOff    uint64
	incompatible    uint64
	compatible      uint64
	autoclear       uint64
	refcountOrder   uint32
	headerLen       uint32
	compressionType uint8 // only when headerLen > 104
}

func (h *header) marshal(b []byte) {
	be := binary.BigEndian
	be.PutUint32(b[0:], magic)
	be.PutUint32(b[4:], h.version)
	be.PutUint64(b[8:], h.backingOff)
	be.PutUint32(b[16:], h.backingLen)
	be.PutUint32(b[20:], h.clusterBits)
	be.PutUint64(b[24:], h.size)
	be.PutUint32(b[32:], h.cryptMethod)
	be.PutUint32(b[36:], h.l1Size)
	be.PutUint64(b[40:], h.l1Off)
	be.PutUint64(b[48:], h.refTableOff)
	be.PutUint32(b[56:], h.refTableCluster)
	be.PutUint32(b[60:], h.nbSnapshots)
	be.PutUint64(b[64:], h.snapshotsOff)
	be.PutUint64(b[72:], h.incompatible)
	be.PutUint64(b[80:], h.compatible)
	be.PutUint64(b[88:], h.autoclear)
	be.PutUint32(b[96:], h.refcountOrder)
	be.PutUint32(b[100:], h.headerLen)
	if h.headerLen > headerLenV3 {
		b[headerLenV3] = h.compressionType
	}
}

// unmarshalHeader decodes the fixed header from b, which holds at least
// headerLenV2 bytes and, for version 3, the whole header_length.
func unmarshalHeader(b []byte) (header, error) {
	be := binary.BigEndian
	var h header
	if len(b) < headerLenV2 {
		return h, errors.New("file too small for a header")
	}
	if be.Uint32(b[0:]) != magic {
		return h, errors.New("bad magic: not a qcow2 image")
	}
	h.version = be.Uint32(b[4:])
	h.backingOff = be.Uint64(b[8:])
	h.backingLen = be.Uint32(b[16:])
	h.clusterBits = be.Uint32(b[20:])
	h.size = be.Uint64(b[24:])
	h.cryptMethod = be.Uint32(b[32:])
	h.l1Size = be.Uint32(b[36:])
	h.l1Off = be.Uint64(b[40:])
	h.refTableOff = be.Uint64(b[48:])
	h.refTableCluster = be.Uint32(b[56:])
	h.nbSnapshots = be.Uint32(b[60:])
	h.snapshotsOff = be.Uint64(b[64:])
	switch h.version {
	case 2:
		h.refcountOrder = refcountOrder
		h.headerLen = headerLenV2
		return h, nil
	case 3:
	default:
		return h, fmt.Errorf("unsupported version %d", h.version)
	}
	if len(b) < headerLenV3 {
		return h, errors.New("file too small for a version 3 header")
	}
	h.incompatible = be.Uint64(b[72:])
	h.compatible = be.Uint64(b[80:])
	h.autoclear = be.Uint64(b[88:])
	h.refcountOrder = be.Uint32(b[96:])
	h.headerLen = be.Uint32(b[100:])
	if h.headerLen < headerLenV3 {
		return h, fmt.Errorf("header length %d below %d", h.headerLen, headerLenV3)
	}
	if int64(h.headerLen) > int64(len(b)) {
		return h, fmt.Errorf("header length %d beyond the header cluster", h.headerLen)
	}
	if h.headerLen > headerLenV3 {
		h.compressionType = b[headerLenV3]
	}
	return h, nil
}

// geometry holds the sizes derived from cluster_bits.
type geometry struct {
	bits       uint   // cluster_bits
	cs         int64  // cluster size in bytes
	l2Entries  int64  // entries per L2 table
	csizeShift uint   // x in the spec: first bit of the compressed sector count
	coffMask   uint64 // host offset bits of a compressed L2 entry
	csizeMask  uint64 // sector count bits, after the shift
}

func newGeometry(bits uint) geometry {
	x := 62 - (bits - 8)
	return geometry{
		bits:       bits,
		cs:         1 << bits,
		l2Entries:  1 << (bits - 3),
		csizeShift: x,
		coffMask:   1<<x - 1,
		csizeMask:  1<<(bits-8) - 1,
	}
}

// l1Needed returns the number of L1 entries needed to map size bytes.
func (g geometry) l1Needed(size int64) int64 {
	span := g.cs * g.l2Entries
	return (size + span - 1) / span
}

// compressedEntry builds the L2 entry of compressed data of n bytes at host
// offset off.
func (g geometry) compressedEntry(off, n int64) uint64 {
	sectors := uint64((off+n-1)/sectorSize - off/sectorSize) // additional sectors
	return flagCompressed | sectors<<g.csizeShift | uint64(off)
}

// parseCompressed returns the host offset and the number of bytes to read
// for a compressed L2 entry.
func (g geometry) parseCompressed(e uint64) (off, n int64) {
	off = int64(e & g.coffMask)
	sectors := int64((e>>g.csizeShift)&g.csizeMask) + 1
	return off, sectors*sectorSize - off%sectorSize
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func alignUp(a, b int64) int64 { return ceilDiv(a, b) * b }
