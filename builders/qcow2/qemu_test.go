package qcow2

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// qemuImg runs qemu-img, skipping the test when it is not installed.
func qemuImg(t testing.TB, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not on PATH")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("qemu-img %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func mustQemuImg(t testing.TB, args ...string) string {
	t.Helper()
	out, err := qemuImg(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// qemuCheck runs qemu-img check and fails on any error or leak.
func qemuCheck(t testing.TB, path string) {
	t.Helper()
	out, err := qemuImg(t, "check", "-f", "qcow2", "--output=json", path)
	if err != nil {
		t.Fatalf("qemu-img check: %v", err)
	}
	var res struct {
		CheckErrors    int `json:"check-errors"`
		Corruptions    int `json:"corruptions"`
		Leaks          int `json:"leaks"`
		ImageEndOffset int `json:"image-end-offset"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("qemu-img check output %q: %v", out, err)
	}
	if res.CheckErrors != 0 || res.Corruptions != 0 || res.Leaks != 0 {
		t.Fatalf("qemu-img check: %s", out)
	}
}

type qemuInfo struct {
	VirtualSize    int64  `json:"virtual-size"`
	Format         string `json:"format"`
	ClusterSize    int    `json:"cluster-size"`
	BackingFile    string `json:"backing-filename"`
	BackingFormat  string `json:"backing-filename-format"`
	FormatSpecific struct {
		Data struct {
			Compat          string `json:"compat"`
			CompressionType string `json:"compression-type"`
		} `json:"data"`
	} `json:"format-specific"`
}

func info(t testing.TB, path string) qemuInfo {
	t.Helper()
	var qi qemuInfo
	out := mustQemuImg(t, "info", "--output=json", path)
	if err := json.Unmarshal([]byte(out), &qi); err != nil {
		t.Fatalf("qemu-img info output %q: %v", out, err)
	}
	return qi
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestQemuAccepts checks every round-trip image with qemu-img: check, info
// and compare against the raw source.
func TestQemuAccepts(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not on PATH")
	}
	for _, rt := range roundTrips() {
		t.Run(rt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			data := rt.source(t)
			raw := writeFile(t, dir, "src.raw", data)
			if rt.opts.BackingFile != "" {
				// A backing file full of data: the clusters the image
				// does not allocate are zero-flagged and must hide it.
				writeFile(t, dir, rt.opts.BackingFile, writeImage(t, fill("random", len(data), 1), Options{}, false))
			}
			img := writeFile(t, dir, "out.qcow2", writeImage(t, data, rt.opts, true))
			qemuCheck(t, img)
			qi := info(t, img)
			if want := alignUp(int64(len(data)), sectorSize); qi.VirtualSize != want || qi.Format != "qcow2" ||
				qi.ClusterSize != rt.optsClusterSize() || qi.FormatSpecific.Data.Compat != "1.1" {
				t.Errorf("qemu-img info: %+v, want virtual size %d", qi, want)
			}
			if want := map[bool]string{false: "zlib", true: "zstd"}[rt.opts.Compress == Zstd]; qi.FormatSpecific.Data.CompressionType != want {
				t.Errorf("qemu-img info: compression type %q, want %q", qi.FormatSpecific.Data.CompressionType, want)
			}
			if qi.BackingFile != rt.opts.BackingFile || qi.BackingFormat != rt.opts.BackingFormat {
				t.Errorf("qemu-img info backing %q (%q), want %q (%q)", qi.BackingFile, qi.BackingFormat, rt.opts.BackingFile, rt.opts.BackingFormat)
			}
			if out, err := qemuImg(t, "compare", "-f", "raw", "-F", "qcow2", raw, img); err != nil || !strings.Contains(out, "Images are identical") {
				t.Fatalf("qemu-img compare: %v %s", err, out)
			}
		})
	}
}

func (rt roundTrip) optsClusterSize() int {
	if rt.opts.ClusterSize == 0 {
		return defaultClusterSize
	}
	return rt.opts.ClusterSize
}

// TestReadQemuImages reads images made by qemu-img convert, plain and
// compressed (zlib and zstd), version 3 and 2.
func TestReadQemuImages(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not on PATH")
	}
	dir := t.TempDir()
	data := fill("mixed", 20<<20+1536, 8)
	copy(data[3<<20:], make([]byte, 5<<20)) // a large zero range
	raw := writeFile(t, dir, "src.raw", data)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"zstd", []string{"-c", "-o", "compression_type=zstd"}},
		{"zstd-512", []string{"-c", "-o", "compression_type=zstd,cluster_size=512"}},
		{"zstd-4k", []string{"-c", "-o", "compression_type=zstd,cluster_size=4096"}},
		{"zstd-2m", []string{"-c", "-o", "compression_type=zstd,cluster_size=2M"}},
		{"compressed", []string{"-c"}},
		{"compressed-4k", []string{"-c", "-o", "cluster_size=4096"}},
		{"compressed-2m", []string{"-c", "-o", "cluster_size=2M"}},
		{"compat-0.10", []string{"-o", "compat=0.10"}},
		{"compressed-compat-0.10", []string{"-c", "-o", "compat=0.10"}},
		{"metadata-prealloc", []string{"-o", "preallocation=metadata"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".qcow2")
			args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, tc.args...)
			mustQemuImg(t, append(args, raw, out)...)
			img, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			im := checkReads(t, img, data)
			if want := map[bool]Compression{false: Zlib, true: Zstd}[strings.HasPrefix(tc.name, "zstd")]; im.CompressionType() != want {
				t.Errorf("CompressionType() = %v, want %v", im.CompressionType(), want)
			}
		})
	}
	// A zero cluster written by qemu-io over data reads as zeros.
	t.Run("zero-flag", func(t *testing.T) {
		qemuIO, err := exec.LookPath("qemu-io")
		if err != nil {
			t.Skip("qemu-io not on PATH")
		}
		out := filepath.Join(dir, "zeroed.qcow2")
		mustQemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, out)
		if b, err := exec.Command(qemuIO, "-f", "qcow2", "-c", "write -z 1M 2M", out).CombinedOutput(); err != nil {
			t.Fatalf("qemu-io: %v\n%s", err, b)
		}
		img, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(data)
		clear(want[1<<20 : 3<<20])
		checkReads(t, img, want)
	})
}

// TestQemuOverlay makes a thin overlay on a base image with Create and
// checks that QEMU reads the base through it.
func TestQemuOverlay(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not on PATH")
	}
	dir := t.TempDir()
	data := fill("mixed", 12<<20, 9)
	base := writeFile(t, dir, "base.qcow2", writeImage(t, data, Options{Compress: Zlib}, false))
	for _, opts := range []Options{
		{BackingFile: "base.qcow2", BackingFormat: "qcow2"},
		{BackingFile: base, BackingFormat: "qcow2", ClusterSize: 512},
		{BackingFile: "base.qcow2", ClusterSize: 2 << 20},
	} {
		var buf bytes.Buffer
		if err := Create(&buf, int64(len(data)), opts); err != nil {
			t.Fatal(err)
		}
		ov := writeFile(t, dir, "overlay.qcow2", buf.Bytes())
		qemuCheck(t, ov)
		qi := info(t, ov)
		if qi.VirtualSize != int64(len(data)) || qi.BackingFile != opts.BackingFile || qi.BackingFormat != opts.BackingFormat {
			t.Errorf("qemu-img info: %+v", qi)
		}
		args := []string{"compare", ov, base}
		if opts.BackingFormat != "" {
			args = []string{"compare", "-f", "qcow2", "-F", "qcow2", ov, base}
		}
		if out, err := qemuImg(t, args...); err != nil || !strings.Contains(out, "Images are identical") {
			t.Errorf("%+v: qemu-img compare: %v %s", opts, err, out)
		}
		// Writing to the overlay through QEMU keeps it consistent.
		if qemuIO, err := exec.LookPath("qemu-io"); err == nil {
			if b, err := exec.Command(qemuIO, "-f", "qcow2", "-c", "write -P 0x55 1M 3M", ov).CombinedOutput(); err != nil {
				t.Fatalf("qemu-io: %v\n%s", err, b)
			}
			qemuCheck(t, ov)
		}
	}
}
