// Package qcow2 writes and reads qcow2 (version 3) disk images in pure Go.
//
// Place in the pipeline: raw disk from builders/disk -> qcow2 output
// (output/<role>.qcow2, optionally with compressed clusters); also thin
// per-machine overlays with a backing file (Create). No qemu-img is needed
// to produce an image; the tests verify every kind of output with qemu-img
// (check, compare, info).
//
// Write converts a raw image in two passes. The first finds the non-zero
// clusters, skipping holes of an *os.File; with Options.Compress it also
// compresses them on all CPUs, results kept in order, holding the
// compressed bytes in memory up to a budget (64 MiB) and in an unlinked
// temporary file beyond it. The second writes the file front to back
// through an io.Writer: header cluster, L1 table, refcount table, refcount
// blocks, L2 tables, uncompressed data clusters (read again from the
// source), then the compressed data packed back to back, padded to 512
// bytes. A host cluster holding parts of N compressed clusters has
// refcount N, as qemu-img check counts it. The output depends only on the
// input bytes and the options (and on compress/flate's output staying the
// same across Go releases).
//
// Compressed clusters are raw deflate streams made by compress/flate, whose
// back references may reach 32 KiB while QEMU deflates with a 4 KiB window:
// QEMU inflates each cluster in one call into a whole-cluster buffer, so it
// reads them (the tests check this with data repeating every 20000 bytes).
//
// Open and Image.ReadAt read images written by this package or by QEMU
// (standard, zero-flagged and zlib-compressed clusters; the active L1 table
// only, snapshots are ignored). A backing file is reported by
// Image.BackingFile but never followed: clusters not allocated in the image
// read as zeros.
package qcow2
