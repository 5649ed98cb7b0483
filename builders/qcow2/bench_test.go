package qcow2

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// benchSource makes a 1 GiB sparse raw file holding about 200 MiB of data
// in 4 MiB pieces: half real files from /usr (binaries, libraries, text),
// half synthetic mixed data.
func benchSource(b *testing.B) string {
	b.Helper()
	const size, piece, stride = 1 << 30, 4 << 20, 20 << 20
	var usr []byte
	_ = filepath.WalkDir("/usr/lib", func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(usr) >= 100<<20 {
			return fs.SkipDir
		}
		if d.Type().IsRegular() {
			if data, err := os.ReadFile(p); err == nil {
				usr = append(usr, data...)
			}
		}
		return nil
	})
	syn := fill("mixed", 100<<20, 1)
	path := filepath.Join(b.TempDir(), "src.raw")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	for i := range 50 {
		src := syn
		if i%2 == 0 && len(usr) >= 100<<20 {
			src = usr
		}
		p := src[(i/2)*piece%len(src):][:piece]
		if _, err := f.WriteAt(p, int64(i)*stride+4096); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

// BenchmarkConvert converts the same raw image with Write and with
// qemu-img convert, plain and compressed (zlib, zstd), and reports per
// conversion the wall time (s/op), the CPU time of the process or of
// qemu-img (cpu-s/op) and the output size (MiB). The output file is
// removed, and dirty pages synced, before each run, as a fresh build would
// see it; Write's output is fsynced, as a bake does (qemu-img flushes its
// output when it closes it).
//
// The raw image is a 1 GiB sparse file holding about 200 MiB (benchSource),
// or the file $QCOW2_BENCH_RAW, e.g. the raw disk of a real bake (labbake
// build --keep-raw):
//
//	go test ./builders/qcow2/ -run '^$' -bench Convert -benchtime 5x
//	QCOW2_BENCH_RAW=output/master.raw go test ./builders/qcow2/ -run '^$' -bench 'Convert/.*zstd' -benchtime 3x
func BenchmarkConvert(b *testing.B) {
	raw := os.Getenv("QCOW2_BENCH_RAW")
	if raw == "" {
		raw = benchSource(b)
	}
	st, err := os.Stat(raw)
	if err != nil {
		b.Fatal(err)
	}
	size := st.Size()
	out := filepath.Join(b.TempDir(), "out.qcow2")
	fresh := func(b *testing.B) {
		b.StopTimer()
		if err := os.Remove(out); err != nil && !errors.Is(err, fs.ErrNotExist) {
			b.Fatal(err)
		}
		unix.Sync()
		b.StartTimer()
	}
	for _, compress := range []Compression{NoCompression, Zlib, Zstd} {
		name := map[Compression]string{NoCompression: "plain", Zlib: "zlib", Zstd: "zstd"}[compress]
		b.Run("labbake/"+name, func(b *testing.B) {
			cpu0 := cpuTime(unix.RUSAGE_SELF)
			for range b.N {
				fresh(b)
				src, err := os.Open(raw)
				if err != nil {
					b.Fatal(err)
				}
				dst, err := os.Create(out)
				if err != nil {
					b.Fatal(err)
				}
				if err := Write(context.Background(), dst, src, size, Options{Compress: compress}); err != nil {
					b.Fatal(err)
				}
				src.Close()
				if err := dst.Sync(); err != nil {
					b.Fatal(err)
				}
				if err := dst.Close(); err != nil {
					b.Fatal(err)
				}
			}
			report(b, out, cpuTime(unix.RUSAGE_SELF)-cpu0)
		})
		b.Run("qemu-img/"+name, func(b *testing.B) {
			if _, err := exec.LookPath("qemu-img"); err != nil {
				b.Skip("qemu-img not on PATH")
			}
			args := []string{"convert", "-f", "raw", "-O", "qcow2", raw, out}
			switch compress {
			case Zlib:
				args = append(args, "-c")
			case Zstd:
				args = append(args, "-c", "-o", "compression_type=zstd")
			}
			cpu0 := cpuTime(unix.RUSAGE_CHILDREN)
			for range b.N {
				fresh(b)
				if msg, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
					b.Fatalf("qemu-img: %v\n%s", err, msg)
				}
			}
			report(b, out, cpuTime(unix.RUSAGE_CHILDREN)-cpu0)
		})
	}
}

// cpuTime returns the user and system CPU seconds of who.
func cpuTime(who int) float64 {
	var ru unix.Rusage
	if unix.Getrusage(who, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func report(b *testing.B, path string, cpu float64) {
	b.Helper()
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "MiB")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/op")
	b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
	b.ReportMetric(0, "ns/op")
}
