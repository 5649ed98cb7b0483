package qcow2

import (
	"bytes"
	"context"
	"io"
	"testing"
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
		{ClusterSize: 512, Compress: true},
		{ClusterSize: 1024, Compress: true, BackingFile: "base.qcow2", BackingFormat: "qcow2"},
		{ClusterSize: 2048, Compress: true},
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
