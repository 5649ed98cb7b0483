package qcow2

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestUnzstd decodes the compressed data of one cluster as QEMU's
// qcow2_zstd_decompress does: frames one after the other until the cluster
// is full, whatever follows them.
func TestUnzstd(t *testing.T) {
	enc, err := newZstdEncoder()
	if err != nil {
		t.Fatal(err)
	}
	crc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	const cs = 65536
	c := fill("mixed", cs, 13)
	one := enc.EncodeAll(c, nil)
	three := enc.EncodeAll(c[:100], nil)
	three = crc.EncodeAll(c[100:40000], three)
	three = enc.EncodeAll(c[40000:], three)
	next := fill("random", 700, 2) // the next cluster's data in the file
	badMagic := bytes.Clone(one)
	badMagic[0] ^= 0xff
	for _, tc := range []struct {
		name string
		src  []byte
		err  string // "" if it reads c
	}{
		{"one frame", one, ""},
		{"one frame, then more data", append(bytes.Clone(one), next...), ""},
		{"three frames, one with a checksum", append(bytes.Clone(three), next...), ""},
		{"truncated", one[:len(one)-10], "corrupt"},
		{"short of a cluster", enc.EncodeAll(c[:cs-1], nil), "ends early"},
		{"short of a cluster, then garbage", append(enc.EncodeAll(c[:cs-1], nil), next...), "corrupt"},
		{"not zstd", next, "corrupt"},
		{"empty", nil, "corrupt"},
		{"bad magic", badMagic, "corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, in := range []int64{0, 1, 30000, cs - 1} {
				p := make([]byte, cs-in)
				err := unzstd(p, bytes.NewReader(tc.src), in)
				if tc.err == "" {
					if err != nil || !bytes.Equal(p, c[in:]) {
						t.Fatalf("from %d: err %v, or other bytes", in, err)
					}
					continue
				}
				if err == nil {
					t.Fatalf("from %d: no error", in)
				}
				if tc.err != "corrupt" && !strings.Contains(err.Error(), tc.err) {
					t.Errorf("from %d: err %v, want %q", in, err, tc.err)
				}
			}
		})
	}
}

// TestZstdStoredUncompressed: a cluster zstd cannot make smaller is
// stored as is, and one it can is not.
func TestZstdStoredUncompressed(t *testing.T) {
	const cs = 4096
	data := append(fill("random", 4*cs, 1), fill("text", 4*cs, 2)...)
	img := writeImage(t, data, Options{ClusterSize: cs, Compress: Zstd}, false)
	im := checkReads(t, img, data)
	for vc := range int64(8) {
		e := l2Entry(t, im, vc)
		if compressed := e&flagCompressed != 0; compressed != (vc >= 4) {
			t.Errorf("cluster %d: L2 entry %#x, compressed %v", vc, e, compressed)
		}
	}
}

// l2Entry returns the L2 entry of virtual cluster vc.
func l2Entry(t *testing.T, im *Image, vc int64) uint64 {
	t.Helper()
	l2, err := im.l2Offset(im.l1[vc/im.g.l2Entries])
	if err != nil || l2 == 0 {
		t.Fatalf("cluster %d: no L2 table (%v)", vc, err)
	}
	b := make([]byte, 8)
	if err := readFull(im.r, b, l2+vc%im.g.l2Entries*8); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint64(b)
}
