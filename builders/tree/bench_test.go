package tree

import (
	"archive/tar"
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeBenchTar writes a rootfs-like tar of about files entries and
// totalBytes of (incompressible) content to path: 1 dir per 50 files, a
// symlink and a hardlink every 500 files, sizes skewed to small files with a
// few large ones.
func writeBenchTar(tb testing.TB, path string, files int, totalBytes int64) (entries int, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(rng.Uint32())
	}
	mt := time.Unix(1.6e9, 0)
	// Sizes: exponential-ish around the mean, scaled to totalBytes.
	sizes := make([]int64, files)
	var sum float64
	raw := make([]float64, files)
	for i := range raw {
		raw[i] = rng.ExpFloat64()
		if i%1000 == 0 {
			raw[i] *= 200 // a few big files (libraries, the kernel)
		}
		sum += raw[i]
	}
	for i := range sizes {
		sizes[i] = int64(raw[i] / sum * float64(totalBytes))
	}
	write := func(h *tar.Header) {
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		entries++
	}
	dir := ""
	for i := range files {
		if i%50 == 0 {
			dir = fmt.Sprintf("usr/share/d%04d", i/50)
			write(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: mt})
		}
		name := fmt.Sprintf("%s/file%05d", dir, i)
		write(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: sizes[i], ModTime: mt})
		for left := sizes[i]; left > 0; {
			n := min(left, int64(len(chunk)))
			off := rng.IntN(len(chunk) - int(n) + 1)
			if _, err := tw.Write(chunk[off : off+int(n)]); err != nil {
				tb.Fatal(err)
			}
			left -= n
		}
		size += sizes[i]
		if i%500 == 0 {
			write(&tar.Header{Typeflag: tar.TypeSymlink, Name: name + ".sym", Linkname: filepath.Base(name), ModTime: mt})
			write(&tar.Header{Typeflag: tar.TypeLink, Name: name + ".lnk", Linkname: name, ModTime: mt})
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	return entries, size
}

// BenchmarkApplyTar applies a generated ~10k-file / ~200 MiB tar. The blob
// dir is under $TMPDIR: point it at a tmpfs to take the disk out. Set
// TREE_BENCH_FILES / TREE_BENCH_MIB to change the size.
func BenchmarkApplyTar(b *testing.B) {
	files, mib := 10000, 200
	if v := os.Getenv("TREE_BENCH_FILES"); v != "" {
		fmt.Sscan(v, &files)
	}
	if v := os.Getenv("TREE_BENCH_MIB"); v != "" {
		fmt.Sscan(v, &mib)
	}
	dir := b.TempDir()
	tarPath := filepath.Join(dir, "bench.tar")
	entries, size := writeBenchTar(b, tarPath, files, int64(mib)<<20)
	b.SetBytes(size)
	b.ResetTimer()
	var elapsed time.Duration
	for i := range b.N {
		b.StopTimer()
		blobDir := filepath.Join(dir, fmt.Sprintf("blobs%d", i))
		f, err := os.Open(tarPath)
		if err != nil {
			b.Fatal(err)
		}
		tr := New(testEpoch)
		b.StartTimer()
		start := time.Now()
		if err := tr.ApplyTar(f, "bench", blobDir); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		f.Close()
		if tr.Len() < files {
			b.Fatalf("only %d entries", tr.Len())
		}
		_ = tr.Entries()
		os.RemoveAll(blobDir)
		b.StartTimer()
	}
	b.ReportMetric(float64(entries)*float64(b.N)/elapsed.Seconds(), "entries/s")
}

// BenchmarkAdd measures Add alone (no I/O): 30k entries in a deep tree.
func BenchmarkAdd(b *testing.B) {
	blob := &Blob{Path: "/x"}
	paths := make([]string, 30000)
	for i := range paths {
		paths[i] = fmt.Sprintf("usr/lib/x86_64-linux-gnu/pkg%03d/sub%02d/file%05d", i/300, i%7, i)
	}
	b.ResetTimer()
	for range b.N {
		tr := New(testEpoch)
		tr.Add(Entry{Path: "lib", Type: Symlink, Linkname: "usr/lib"})
		for _, p := range paths {
			if err := tr.Add(Entry{Path: p, Type: Regular, Mode: 0o644, Content: blob}); err != nil {
				b.Fatal(err)
			}
		}
		_ = tr.Entries()
		tr.Remove("usr")
	}
	b.ReportMetric(float64(len(paths)), "entries/op")
}
