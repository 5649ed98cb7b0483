package cache

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"testing"
)

// benchSize is the blob size of the benchmarks: 64 MiB, or
// LABBAKE_BENCH_MIB MiB (the README numbers use 500).
func benchSize(b *testing.B) int {
	if s := os.Getenv("LABBAKE_BENCH_MIB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		return n << 20
	}
	return 64 << 20
}

func benchCache(b *testing.B) (*Cache, []byte, string) {
	b.Helper()
	c, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	data := content(99, benchSize(b))
	d, _, err := c.Put(context.Background(), bytes.NewReader(data), "")
	if err != nil {
		b.Fatal(err)
	}
	return c, data, d
}

// BenchmarkPut includes the fsync of the blob.
func BenchmarkPut(b *testing.B) {
	c, data, d := benchCache(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		if _, _, err := c.Put(context.Background(), bytes.NewReader(data), d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	c, data, d := benchCache(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		if err := c.Verify(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenRead(b *testing.B) {
	c, data, d := benchCache(b)
	b.SetBytes(int64(len(data)))
	buf := make([]byte, 1<<20)
	b.ResetTimer()
	for range b.N {
		rc, err := c.Open(d)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

func benchBundle(b *testing.B, compress bool) {
	c, data, d := benchCache(b)
	f, err := os.Create(b.TempDir() + "/bundle")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.Run("export", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			if _, err := f.Seek(0, 0); err != nil {
				b.Fatal(err)
			}
			if err := f.Truncate(0); err != nil {
				b.Fatal(err)
			}
			if err := c.ExportBundle(context.Background(), f, nil, nil, []string{d}, compress); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("import", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			dst, err := Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Seek(0, 0); err != nil {
				b.Fatal(err)
			}
			if _, err := dst.ImportBundle(context.Background(), f, ImportOptions{Size: int64(len(data))}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBundlePlain(b *testing.B) { benchBundle(b, false) }
func BenchmarkBundleZstd(b *testing.B)  { benchBundle(b, true) }
