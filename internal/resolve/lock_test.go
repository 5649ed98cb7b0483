package resolve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLockRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), LockFile)
	l, err := LoadLock(path)
	if err != nil || l.Exists() {
		t.Fatalf("missing lock: %v, exists %v", err, l.Exists())
	}
	l.Set("oci docker://b:1", "sha256:bb")
	l.Set("checksum https://a/x.sha256 x", "sha256:aa")
	l.Set("debian debian:cc", "sha256:cc")
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	// Sorted keys, one input a line: diff-friendly.
	want := `{
  "format": 1,
  "inputs": {
    "checksum https://a/x.sha256 x": "sha256:aa",
    "debian debian:cc": "sha256:cc",
    "oci docker://b:1": "sha256:bb"
  }
}
`
	if string(b) != want {
		t.Errorf("lock file:\n%s\nwant:\n%s", b, want)
	}
	l2, err := LoadLock(path)
	if err != nil || !l2.Exists() {
		t.Fatal(err)
	}
	if v, ok := l2.Get("oci docker://b:1"); !ok || v != "sha256:bb" {
		t.Errorf("Get = %q, %v", v, ok)
	}
	l2.Keep(map[string]bool{"oci docker://b:1": true})
	if _, ok := l2.Get("debian debian:cc"); ok {
		t.Error("Keep left an unused entry")
	}
}

func TestLockErrors(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"not json", "inputs = 1", "invalid character"},
		{"future format", `{"format": 2, "inputs": {}}`, "format 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), LockFile)
			os.WriteFile(path, []byte(tc.content), 0o644)
			_, err := LoadLock(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v, want one naming %s and %q", err, path, tc.want)
			}
		})
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
