// Package qcow2 writes and reads qcow2 (version 3) disk images in pure Go.
//
// Place in the pipeline: raw disk from builders/disk -> qcow2 output
// (output/<role>.qcow2, optionally with zlib- or zstd-compressed clusters);
// also thin per-machine overlays with a backing file (Create). No qemu-img is needed
// to produce an image; the tests verify every kind of output with qemu-img
// (check, compare, info).
//
// Write converts a raw image in two passes. The first finds the non-zero
// clusters, skipping holes of an *os.File; with Options.Compress it also
// compresses them on all CPUs (each cluster on its own, so the number of
// CPUs does not change the bytes), results kept in order, holding the
// compressed bytes in memory up to a budget (64 MiB) and in an unlinked
// temporary file beyond it. The second writes the file front to back
// through an io.Writer: header cluster, L1 table, refcount table, refcount
// blocks, L2 tables, uncompressed data clusters (read again from the
// source), then the compressed data packed back to back, padded to 512
// bytes. A host cluster holding parts of N compressed clusters has
// refcount N, as qemu-img check counts it. A cluster whose compressed data
// is not smaller than the cluster is stored as is, as QEMU does.
//
// The output depends only on the input bytes and the options, and on the
// compressor: byte-identical images need the same compressor code.
//
// Zlib (QEMU's default compression type, which every qcow2 reader knows):
// clusters are raw deflate streams made by compress/flate at level 4, so
// the bytes depend on compress/flate's output staying the same across Go
// releases. Their back references may reach 32 KiB while QEMU deflates
// with a 4 KiB window: QEMU inflates each cluster in one call into a
// whole-cluster buffer, so it reads them (the tests check this with data
// repeating every 20000 bytes).
//
// Zstd (compression type 1, QEMU 5.1 and later): the header is 112 bytes,
// with compression_type at byte 104 and incompatible feature bit 3 set, as
// docs/interop/qcow2.txt requires, and each cluster is one zstd frame, as
// QEMU's qcow2_zstd_compress makes it (QEMU decodes frames until the
// cluster is full and needs neither a content size nor a checksum). The
// frames are made by github.com/klauspost/compress/zstd with every setting
// that shapes the bytes pinned in newZstdEncoder (level, no checksum, window,
// no dictionary, one frame per cluster with EncodeAll): outputs are
// byte-identical for a given version of klauspost/compress, which go.mod
// pins; TestZstdPinned fails when an update of it changes them.
//
// Open and Image.ReadAt read images written by this package or by QEMU
// (standard, zero-flagged, zlib- and zstd-compressed clusters; the active
// L1 table only, snapshots are ignored; a zstd frame may ask for a window
// of at most 8 MiB, which bounds the memory a hostile image can make a
// reader take); an image with another compression type is refused when
// opened. A backing file is reported by
// Image.BackingFile but never followed: clusters not allocated in the image
// read as zeros.
package qcow2
