package qcow2

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// FuzzOpen opens arbitrary bytes as an image and reads a few ranges: it must
// return errors, never panic or hang.
//
//	go test ./builders/qcow2/ -run '^$' -fuzz FuzzOpen -fuzztime 60s -fuzzminimizetime 5s
//
// (The default minimizing time of 60 s per new input leaves the fuzzer idle
// for most of a short run.)
func FuzzOpen(f *testing.F) {
	data := fill("mixed", 6<<10, 1) // small seeds keep minimizing fast
	for _, opts := range []Options{
		{ClusterSize: 512},
		{ClusterSize: 512, Compress: Zlib},
		{ClusterSize: 1024, Compress: Zlib, BackingFile: "base.qcow2", BackingFormat: "qcow2"},
		{ClusterSize: 2048, Compress: Zlib},
		{ClusterSize: 512, Compress: Zstd},
		{ClusterSize: 1024, Compress: Zstd, BackingFile: "base.qcow2", BackingFormat: "qcow2"},
	} {
		var buf bytes.Buffer
		if err := Write(context.Background(), &buf, bytes.NewReader(data), int64(len(data)), opts); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	var buf bytes.Buffer
	if err := Create(&buf, 100<<20, Options{ClusterSize: 512, BackingFile: "base.qcow2"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, img []byte) {
		im, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return
		}
		p := make([]byte, 3*im.ClusterSize())
		for _, off := range []int64{0, im.Size() / 3, im.Size() - 1, im.Size() - int64(len(p)/2)} {
			if off < 0 {
				continue
			}
			n, err := im.ReadAt(p, off)
			if n < 0 || n > len(p) || (n < len(p) && err == nil) {
				t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
			}
			if err != nil && err != io.EOF {
				return
			}
		}
	})
}

// FuzzZstdCluster decodes arbitrary bytes as the compressed data of a zstd
// cluster, as ReadAt does: it must return an error or fill the cluster,
// never panic, hang or use much memory, and reading from an offset inside
// the cluster must give the same bytes as reading all of it.
//
//	go test ./builders/qcow2/ -run '^$' -fuzz FuzzZstdCluster -fuzztime 60s -fuzzminimizetime 5s
func FuzzZstdCluster(f *testing.F) {
	enc, err := newZstdEncoder()
	if err != nil {
		f.Fatal(err)
	}
	crc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	for i, kind := range []string{"text", "random", "repeat", "partial", "mixed"} {
		c := fill(kind, 4096, uint64(i))
		f.Add(enc.EncodeAll(c, nil), uint16(0))
		// Two frames, a checksum, and what follows in the file.
		two := enc.EncodeAll(c[:1000], nil)
		two = crc.EncodeAll(c[1000:], two)
		f.Add(append(two, fill("random", 300, 1)...), uint16(1500))
	}
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, in uint16) {
		const cs = 4096
		off := int64(in % cs)
		whole := make([]byte, cs)
		errWhole := unzstd(whole, bytes.NewReader(data), 0)
		part := make([]byte, cs-off)
		errPart := unzstd(part, bytes.NewReader(data), off)
		if errWhole == nil && (errPart != nil || !bytes.Equal(part, whole[off:])) {
			t.Fatalf("reading from %d: %v, or other bytes than reading the whole cluster", off, errPart)
		}
	})
}
