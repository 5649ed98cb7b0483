package iox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {999, "999 B"}, {1000, "1.0 KiB"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"}, {1023 << 10, "1.0 MiB"}, {999 << 10, "999.0 KiB"},
		{1 << 62, "4.0 EiB"}, {1<<63 - 1, "8.0 EiB"},
	} {
		if got := Bytes(tc.n); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestParseDigest(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"sha256:" + hex, true},
		{hex, false},
		{"sha256:" + strings.ToUpper(hex), false},
		{"sha256:" + hex[:63], false},
		{"sha256:" + hex + "0", false},
		{"sha512:" + strings.Repeat("ab", 64), false},
		{"md5:" + hex[:32], false},
		{"sha256:" + hex[:62] + "zz", false},
		{"", false},
		{"sha256:", false},
	} {
		d, err := ParseDigest(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseDigest(%q) = %q, %v; want ok=%v", tc.in, d, err, tc.ok)
		}
		if err == nil && (d.String() != tc.in || d.Encoded() != hex) {
			t.Errorf("ParseDigest(%q) = %q (%s)", tc.in, d, d.Encoded())
		}
	}
	for s, want := range map[string]bool{hex: true, "sha256:" + hex: false, strings.ToUpper(hex): false, hex[:63]: false, hex + "0": false, "": false, hex[:62] + ":a": false} {
		if IsSHA256Hex(s) != want {
			t.Errorf("IsSHA256Hex(%q) = %v", s, !want)
		}
	}
	// An untrusted string is quoted, cut short.
	_, err := ParseDigest(strings.Repeat("x", 5000))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("long input: %v", err)
	}
	if got := DigestBytes([]byte("abc")); got != "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("DigestBytes = %s", got)
	}
}

func TestReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := Reader(ctx, bytes.NewReader(make([]byte, 10)))
	buf := make([]byte, 4)
	if n, err := r.Read(buf); n != 4 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	cancel()
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %d, %v", n, err)
	}
	if _, err := io.Copy(io.Discard, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Copy after cancel: %v", err)
	}
}

func TestLockFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.lock")
	unlock, err := LockFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	// A second lock waits, and ends when its context does.
	ctx, cancel := context.WithTimeout(context.Background(), 3*LockPoll)
	defer cancel()
	start := time.Now()
	if _, err := LockFile(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock: %v, want the deadline", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the wait took %s after its context ended", d)
	}
	// Busy is called once; the lock is taken once released.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	calls := 0
	go func() { time.Sleep(2 * LockPoll); unlock(); unlock() }()
	if err := Flock(context.Background(), f, func() { calls++ }); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("busy called %d times, want 1", calls)
	}
	if ok, err := TryFlock(f); !ok || err != nil { // already ours: flock is per open file
		t.Errorf("TryFlock of a held lock = %v, %v", ok, err)
	}
	g, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if ok, err := TryFlock(g); ok || err != nil {
		t.Errorf("TryFlock of a lock another file holds = %v, %v", ok, err)
	}
}

func TestLockFileRefusesSymlink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	target := filepath.Join(outside, "created")
	link := filepath.Join(dir, ".master.lock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, err := LockFile(context.Background(), link)
	if !errors.Is(err, unix.ELOOP) {
		t.Fatalf("lock through a dangling symlink: %v, want ELOOP", err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("the symlink's target was created")
	}
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LockFile(context.Background(), link); !errors.Is(err, unix.ELOOP) {
		t.Fatalf("lock through a symlink: %v, want ELOOP", err)
	}
}

func TestPermBits(t *testing.T) {
	for _, tc := range []struct {
		mode fs.FileMode
		bits uint32
	}{
		{0o644, 0o644},
		{0o755 | fs.ModeDir, 0o755},
		{0o755 | fs.ModeSetuid, 0o4755},
		{0o2755&0o777 | fs.ModeSetgid, 0o2755},
		{0o777 | fs.ModeSticky | fs.ModeDir, 0o1777},
		{0o7777&0o777 | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky, 0o7777},
	} {
		if got := PermBits(tc.mode); got != tc.bits {
			t.Errorf("PermBits(%v) = %o, want %o", tc.mode, got, tc.bits)
		}
		if got := FileMode(tc.bits); got != tc.mode&^fs.ModeDir {
			t.Errorf("FileMode(%o) = %v, want %v", tc.bits, got, tc.mode&^fs.ModeDir)
		}
	}
}
