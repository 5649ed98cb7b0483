package resolve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Digests for the tests.
var (
	dA = "sha256:" + strings.Repeat("a", 64)
	dB = "sha256:" + strings.Repeat("b", 64)
	dC = "sha256:" + strings.Repeat("c", 64)
	// A toolchain's pin: a go.sum hash.
	h1A = "h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM="
)

func TestLockRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), LockFile)
	l, err := LoadLock(path)
	if err != nil || l.Exists() {
		t.Fatalf("missing lock: %v, exists %v", err, l.Exists())
	}
	l.Set("oci docker://b:1", dB)
	l.Set("checksum https://a/x.sha256 x", dA)
	l.Set("debian debian:cc", dC)
	l.Set("gosum example.com/m@v1.0.0 cmd/a go1.26.8", dA)
	l.Set("go example.com/m@v1.0.0 cmd/a go1.26.8 linux/amd64 "+dC, dB)
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	// Sorted keys, one input a line: diff-friendly.
	want := `{
  "format": 1,
  "inputs": {
    "checksum https://a/x.sha256 x": "` + dA + `",
    "debian debian:cc": "` + dC + `",
    "go example.com/m@v1.0.0 cmd/a go1.26.8 linux/amd64 ` + dC + `": "` + dB + `",
    "gosum example.com/m@v1.0.0 cmd/a go1.26.8": "` + dA + `",
    "oci docker://b:1": "` + dB + `"
  }
}
`
	if string(b) != want {
		t.Errorf("lock file:\n%s\nwant:\n%s", b, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("lock file mode: %v, %v; want 0644", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(path + "*tmp*"); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	l2, err := LoadLock(path)
	if err != nil || !l2.Exists() {
		t.Fatal(err)
	}
	if v, ok := l2.Get("oci docker://b:1"); !ok || v != dB {
		t.Errorf("Get = %q, %v", v, ok)
	}
	l2.Keep(map[string]bool{"oci docker://b:1": true})
	if _, ok := l2.Get("debian debian:cc"); ok {
		t.Error("Keep left an unused entry")
	}
	// ParseLock reads what Bytes writes.
	l3, err := ParseLock("bytes", b)
	if err != nil {
		t.Fatal(err)
	}
	if b3, _ := l3.Bytes(); string(b3) != want {
		t.Errorf("ParseLock then Bytes:\n%s", b3)
	}
	if err := l3.Save(); err == nil {
		t.Error("Save of a lock from ParseLock succeeded: it has no path")
	}
}

// Save replaces a symlink at the lock's path; it never writes through it.
// A toolchain's pin is its module's h1 hash, and round-trips like the
// digests.
func TestLockToolchain(t *testing.T) {
	data := `{
  "format": 1,
  "inputs": {
    "gosum example.com/m@v1.0.0 cmd/a go1.26.8": "` + dA + `",
    "gotoolchain go1.26.8 darwin/arm64": "h1:8wlg68NqwW7eMnI1aABk/C2pDYXj8mrMY4TyRfiLeS0=",
    "gotoolchain go1.26.8 linux/amd64": "` + h1A + `"
  }
}
`
	l, err := ParseLock("f", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := l.Get("gotoolchain go1.26.8 linux/amd64"); !ok || v != h1A {
		t.Errorf("Get = %q, %v", v, ok)
	}
	if k := l.keys("gotoolchain go1.26.8 "); len(k) != 2 {
		t.Errorf("keys %q", k)
	}
	if b, err := l.Bytes(); err != nil || string(b) != data {
		t.Errorf("Bytes:\n%s\n%v; want\n%s", b, err, data)
	}
}

func TestLockSaveSymlink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	target := filepath.Join(outside, "target")
	path := filepath.Join(dir, LockFile)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	l, err := LoadLock(path) // dangling: an empty lock
	if err != nil || l.Exists() {
		t.Fatalf("LoadLock of a dangling symlink: %v, exists %v", err, l.Exists())
	}
	l.Set("oci x", dA)
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("Save wrote through the symlink")
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("lock path after Save: %v, %v", fi, err)
	}
}

func TestLockErrors(t *testing.T) {
	good := func(inputs string) string { return `{"format": 1, "inputs": {` + inputs + `}}` }
	for _, tc := range []struct{ name, content, want string }{
		{"not json", "inputs = 1", ":1:1: not a labbake.lock: invalid character 'i'"},
		{"yaml", "format: 1\n", ":1:2: not a labbake.lock"},
		{"empty", "", ":1:1: not a labbake.lock: unexpected end"},
		{"array", "[1]", ":1:1: not a labbake.lock: want a JSON object"},
		{"truncated", "{\n  \"format\": 1,\n  \"inputs\": {", ":3:14: not a labbake.lock: unexpected end"},
		{"future format", `{"format": 2, "inputs": {}}`, ":1:12: format 2"},
		{"format as a string", `{"format": "1", "inputs": {}}`, ":1:12: format 1:"},
		{"no format", `{"inputs": {}}`, ":1:1: no format"},
		{"format twice", `{"format": 1, "format": 1}`, `:1:15: "format" appears twice`},
		{"unknown field", `{"format": 1, "extra": {}}`, `:1:15: unknown field "extra"`},
		{"inputs not an object", `{"format": 1, "inputs": []}`, ":1:25: inputs: want an object"},
		{"unknown kind", good(`"git x": "` + dA + `"`), `:1:26: input "git x": unknown kind`},
		{"kind alone", good(`"oci ": "` + dA + `"`), `:1:26: input "oci ": nothing after "oci "`},
		{"not a digest", good("\n \"oci x\": \"sha256:aa\""), `:2:11: input "oci x": invalid digest "sha256:aa"`},
		{"other algorithm", good(`"oci x": "sha512:` + strings.Repeat("a", 128) + `"`), `:1:35: input "oci x": invalid digest`},
		{"number value", good(`"oci x": 3`), `:1:35: input "oci x": want a digest string`},
		{"input twice", good(`"oci x": "` + dA + `", "oci x": "` + dB + `"`), `:1:110: input "oci x" appears twice`},
		{"trailing data", good("") + "\n{}", ":2:1: data after the lock's JSON object"},
		{"go key unsorted packages", good(`"gosum example.com/m@v1.0.0 cmd/b,cmd/a go1.26.8": "` + dA + `"`), `:1:26: input "gosum example.com/m@v1.0.0 cmd/b,cmd/a go1.26.8": packages "cmd/b,cmd/a": want them sorted`},
		{"go key without options", good(`"go example.com/m@v1.0.0 cmd/a go1.26.8 linux/amd64": "` + dA + `"`), `:1:26: input "go example.com/m@v1.0.0 cmd/a go1.26.8 linux/amd64": want "go MODULE@VERSION`},
		{"go key branch", good(`"gosum example.com/m@main . go1.26.8": "` + dA + `"`), `:1:26: input "gosum example.com/m@main . go1.26.8": "main" is not a semantic version tag`},
		{"toolchain key without a platform", good(`"gotoolchain go1.26.8 linux": "` + h1A + `"`), `:1:26: input "gotoolchain go1.26.8 linux": "linux" is not GOOS/GOARCH`},
		{"toolchain key of no release", good(`"gotoolchain 1.26.8 linux/amd64": "` + h1A + `"`), `:1:26: input "gotoolchain 1.26.8 linux/amd64": "1.26.8" is not a Go release`},
		{"toolchain pinned by a digest", good(`"gotoolchain go1.26.8 linux/amd64": "` + dA + `"`), `:1:62: input "gotoolchain go1.26.8 linux/amd64": invalid hash "sha256:`},
		{"h1 hash of an image", good(`"oci x": "` + h1A + `"`), `:1:35: input "oci x": invalid digest "h1:`},
		{"invalid UTF-8", "{\n\"format\": 1, \"inputs\": {\"oci \xff\": 1}}", ":2:30: not a labbake.lock: invalid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), LockFile)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadLock(path)
			if err == nil || !strings.Contains(err.Error(), path+tc.want) {
				t.Errorf("err = %v\nwant one containing %q", err, path+tc.want)
			}
		})
	}
	// A dangling symlink is a missing lock; an unreadable path is an error.
	dir := t.TempDir()
	if _, err := LoadLock(dir); err == nil {
		t.Error("LoadLock of a directory succeeded")
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxLockSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadLock(big); err == nil || !strings.Contains(err.Error(), "more than a lock file may hold") {
		t.Errorf("oversized lock: %v", err)
	}
}

func TestResolverFrozen(t *testing.T) {
	l, _ := LoadLock(filepath.Join(t.TempDir(), LockFile))
	r := &Resolver{Lock: l, Frozen: true}
	if _, _, err := r.locked("oci docker://x:1"); err == nil || !strings.Contains(err.Error(), "not in labbake.lock") || !IsInputError(err) {
		t.Errorf("frozen lookup of an unlocked input: %v", err)
	}
	l.Set("oci docker://x:1", "sha256:11")
	if v, ok, err := r.locked("oci docker://x:1"); err != nil || !ok || v != "sha256:11" {
		t.Errorf("frozen lookup of a locked input: %q %v %v", v, ok, err)
	}
	if !r.Used()["oci docker://x:1"] {
		t.Error("Used does not list a looked-up key")
	}
}

// FuzzParseLock: any bytes give a lock or an error with a position, never a
// panic; a lock that parses writes itself back in a form that parses to the
// same entries.
func FuzzParseLock(f *testing.F) {
	f.Add([]byte(`{"format": 1, "inputs": {"oci x": "` + dA + `"}}`))
	f.Add([]byte(`{"format": 1}`))
	f.Add([]byte(`{"format": 1, "inputs": {"gosum example.com/m@v1.0.0 cmd/a go1.26.8 staging": "` + dA + `", "go example.com/m@v1.0.0 . go1.26.8 linux/amd64 ` + dB + `": "` + dC + `"}}`))
	f.Add([]byte("{\"format\": 1, \"inputs\": {\"checksum u f\": 1"))
	f.Add([]byte("\xff"))
	f.Add([]byte(`{"format": 1, "inputs": {"gotoolchain go1.26.8 linux/amd64": "` + h1A + `"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLock("f", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Fatalf("error without the name: %v", err)
			}
			return
		}
		b, err := l.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		l2, err := ParseLock("f", b)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b, err)
		}
		if b2, _ := l2.Bytes(); string(b2) != string(b) {
			t.Fatalf("round trip changed the lock:\n%s\n%s", b, b2)
		}
	})
}
