package bake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/internal/testfs"
)

// blocksOf makes a stream from block seeds: each seed gives a 64 KiB block
// of its own random bytes; tail adds that many bytes more.
func blocksOf(seeds []uint64, tail int) []byte {
	var b []byte
	for _, s := range seeds {
		blk := make([]byte, reuseBlock)
		rand.NewChaCha8([32]byte{byte(s), byte(s >> 8)}).Read(blk)
		b = append(b, blk...)
	}
	return append(b, bytes.Repeat([]byte{7}, tail)...)
}

// TestBlockWriter: whatever the previous image holds, the new one is
// written exactly; blocks the previous one holds are cloned where the
// file system shares extents, and copied from it where it does not.
func TestBlockWriter(t *testing.T) {
	dirs := map[string]string{"no extent sharing": t.TempDir(), "btrfs": testfs.Reflink(t, 256<<20)}
	for _, tc := range []struct {
		name     string
		old, new []byte
		reused   int64 // bytes taken from the old image
	}{
		{"same", blocksOf([]uint64{1, 2, 3, 4}, 0), blocksOf([]uint64{1, 2, 3, 4}, 0), 4 * reuseBlock},
		{"one block changed", blocksOf([]uint64{1, 2, 3, 4}, 0), blocksOf([]uint64{1, 9, 3, 4}, 0), 3 * reuseBlock},
		{"a block put in (the rest moves)", blocksOf([]uint64{1, 2, 3, 4}, 0), blocksOf([]uint64{1, 9, 2, 3, 4}, 0), 4 * reuseBlock},
		{"blocks swapped", blocksOf([]uint64{1, 2, 3, 4}, 0), blocksOf([]uint64{3, 4, 1, 2}, 0), 4 * reuseBlock},
		{"a block twice", blocksOf([]uint64{1, 2}, 0), blocksOf([]uint64{2, 2, 2}, 0), 3 * reuseBlock},
		{"partial last blocks are written", blocksOf([]uint64{1, 2}, 100), blocksOf([]uint64{1, 2}, 100), 2 * reuseBlock},
		{"nothing in common", blocksOf([]uint64{1, 2}, 0), blocksOf([]uint64{5, 6}, 0), 0},
		{"no previous image", nil, blocksOf([]uint64{1, 2}, 3), 0},
	} {
		for fs, dir := range dirs {
			t.Run(tc.name+"/"+fs, func(t *testing.T) {
				prevPath := filepath.Join(dir, tc.name+".old")
				if err := os.WriteFile(prevPath, tc.old, 0o644); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(prevPath)
				at := map[[32]byte]int64{}
				for off := int64(0); off+reuseBlock <= int64(len(tc.old)); off += reuseBlock {
					at[sha256.Sum256(tc.old[off:off+reuseBlock])] = off
				}
				prev, err := os.Open(prevPath)
				if err != nil {
					t.Fatal(err)
				}
				defer prev.Close()
				dst, err := os.Create(filepath.Join(dir, tc.name+".new"))
				if err != nil {
					t.Fatal(err)
				}
				defer os.Remove(dst.Name())
				defer dst.Close()
				w := newBlockWriter(dst, prev, at)
				// Odd write sizes: blocks span writes.
				for p := tc.new; len(p) > 0; {
					k := min(len(p), 40000)
					if _, err := w.Write(p[:k]); err != nil {
						t.Fatal(err)
					}
					p = p[k:]
				}
				sums, err := w.Close()
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(dst.Name())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tc.new) {
					t.Fatalf("the new image's %d bytes differ from the %d written", len(got), len(tc.new))
				}
				for i, s := range sums {
					end := min(int64(i+1)*reuseBlock, int64(len(tc.new)))
					if s != sha256.Sum256(tc.new[int64(i)*reuseBlock:end]) {
						t.Errorf("digest of block %d is wrong", i)
					}
				}
				if w.cloned+w.wrote != int64(len(tc.new)) {
					t.Errorf("cloned %d + wrote %d bytes, want %d in all", w.cloned, w.wrote, len(tc.new))
				}
				wantCloned := int64(0)
				if canClone(dir) {
					wantCloned = tc.reused
				}
				if w.cloned != wantCloned {
					t.Errorf("cloned %d bytes, want %d", w.cloned, wantCloned)
				}
			})
		}
	}
}

// TestWriteQcow2Reuse converts a raw disk, keeps the block map, changes
// a few bytes of the disk and converts again: on btrfs all but the
// changed blocks are cloned from the image, and the image is byte for byte
// what a conversion without reuse writes. An image changed since its map
// was kept (as by booting it) is not taken from.
func TestWriteQcow2Reuse(t *testing.T) {
	dir := testfs.Reflink(t, 256<<20)
	if !canClone(dir) {
		t.Fatal("btrfs does not share extents here")
	}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	disk := blocksOf([]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, 0)
	copy(disk[5*reuseBlock:], make([]byte, 3*reuseBlock)) // zero clusters are not stored
	dst := filepath.Join(dir, "m.qcow2")
	blockMap := filepath.Join(t.TempDir(), "images", "m.blocks")
	build := func(reuse bool) (*qcow2Out, []byte) {
		t.Helper()
		if err := os.WriteFile(raw, disk, 0o644); err != nil {
			t.Fatal(err)
		}
		j := qcow2Job{raw: raw, dst: dst, tempDir: t.TempDir(), size: int64(len(disk))}
		if reuse {
			j.blockMap = blockMap
		}
		q, err := writeQcow2(context.Background(), j)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(q.tmp)
		if err != nil {
			t.Fatal(err)
		}
		if reuse {
			if err := os.Rename(q.tmp, dst); err != nil {
				t.Fatal(err)
			}
			if err := keepBlockMap(blockMap, dst, q.blocks); err != nil {
				t.Fatal(err)
			}
		} else {
			os.Remove(q.tmp)
		}
		return q, b
	}
	if q, _ := build(true); q.reused != 0 || len(q.blocks) == 0 {
		t.Fatalf("first image: reused %d bytes, %d block digests", q.reused, len(q.blocks))
	}
	disk[12*reuseBlock+100] ^= 0xff
	q, got := build(true)
	_, want := build(false)
	if !bytes.Equal(got, want) {
		t.Fatal("the image made with reuse differs from one written whole")
	}
	if q.reused == 0 || q.reused > q.size-reuseBlock {
		t.Errorf("reused %d of %d bytes: want all but the changed block", q.reused, q.size)
	}
	im, err := qcow2.Open(bytes.NewReader(got), int64(len(got)))
	if err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(disk))
	if _, err := im.ReadAt(back, 0); err != nil || !bytes.Equal(back, disk) {
		t.Errorf("the image does not read back as the disk: %v", err)
	}

	// The image changed under its map: nothing is taken from it.
	now := time.Now().Add(time.Hour)
	if err := os.Chtimes(dst, now, now); err != nil {
		t.Fatal(err)
	}
	disk[12*reuseBlock+100] ^= 0xff
	if q, _ := build(true); q.reused != 0 {
		t.Errorf("an image changed since its block map was kept: reused %d bytes", q.reused)
	}
}
