package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
)

const goodLock = `{
  "format": 1,
  "inputs": {
    "oci docker://x:1": "sha256:1111111111111111111111111111111111111111111111111111111111111111"
  }
}
`

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// makeBundle exports a bundle of one blob with lock from a scratch cache.
func makeBundle(t *testing.T, lock string, compress bool) (path, digest string) {
	t.Helper()
	c, err := cache.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := c.Put(context.Background(), strings.NewReader("a cached input\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.ExportBundle(context.Background(), &buf, []byte(lock), nil, []string{d}, compress); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "lab.bundle")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, d
}

// tree lists every path under dir with its type and content, for "nothing
// changed" checks.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := rel + " " + e.Type().String()
		if e.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			line += " " + digestOf(b)
		}
		if e.Type()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		lines = append(lines, line)
		return nil
	})
	return strings.Join(lines, "\n")
}

// bundle import writes the bundle's lock only where the lab has none,
// atomically, never through a symlink, and only once it checks out like a
// lock the user wrote (issue 9, item 6).
func TestBundleImportLock(t *testing.T) {
	good, _ := makeBundle(t, goodLock, true)
	for _, tc := range []struct {
		name     string
		bundle   string
		setup    func(t *testing.T, lab, outside string)
		code     int
		out      string // in stdout+stderr
		wantLock string // content of LAB/labbake.lock afterwards, "" for none or a symlink
		imported bool   // the blob is in the cache afterwards
	}{
		{name: "no lock in the lab", bundle: good, code: 0, out: "written from the bundle", wantLock: goodLock, imported: true},
		{name: "a lock in the lab", bundle: good, setup: func(t *testing.T, lab, _ string) {
			os.WriteFile(filepath.Join(lab, "labbake.lock"), []byte(`{"format": 1}`), 0o644)
		}, code: 0, out: "kept, not replaced by the bundle's; it differs", wantLock: `{"format": 1}`, imported: true},
		{name: "a dangling symlink", bundle: good, setup: func(t *testing.T, lab, outside string) {
			os.Symlink(filepath.Join(outside, "victim"), filepath.Join(lab, "labbake.lock"))
		}, code: 0, out: "kept", imported: true},
		{name: "a symlink to a file", bundle: good, setup: func(t *testing.T, lab, outside string) {
			os.WriteFile(filepath.Join(outside, "target"), []byte("precious"), 0o644)
			os.Symlink(filepath.Join(outside, "target"), filepath.Join(lab, "labbake.lock"))
		}, code: 0, out: "kept", imported: true},
		{name: "garbage lock in the bundle", bundle: func() string { p, _ := makeBundle(t, "# labbake.lock\nversion: 1\n", true); return p }(),
			code: 2, out: "labbake.lock:1:1: not a labbake.lock"},
		{name: "a lock pinning no digest", bundle: func() string {
			p, _ := makeBundle(t, `{"format": 1, "inputs": {"oci x": "latest"}}`, false)
			return p
		}(), code: 2, out: `labbake.lock:1:35: input "oci x": invalid digest "latest"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab, outside, cacheDir := t.TempDir(), t.TempDir(), t.TempDir()
			if tc.setup != nil {
				tc.setup(t, lab, outside)
			}
			outsideBefore := tree(t, outside)
			stdout, stderr, code := run(t, "-C", lab, "--cache", cacheDir, "bundle", "import", tc.bundle)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.out) {
				t.Fatalf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tc.code, tc.out, stdout, stderr)
			}
			fi, err := os.Lstat(filepath.Join(lab, "labbake.lock"))
			switch {
			case tc.wantLock != "":
				b, _ := os.ReadFile(filepath.Join(lab, "labbake.lock"))
				if err != nil || !fi.Mode().IsRegular() || string(b) != tc.wantLock || fi.Mode().Perm() != 0o644 {
					t.Errorf("labbake.lock: %v %v %q; want a 0644 file with %q", fi, err, b, tc.wantLock)
				}
			case tc.setup == nil && err == nil:
				t.Error("labbake.lock written from a refused bundle")
			}
			if got := tree(t, outside); got != outsideBefore {
				t.Errorf("written through a symlink:\n%s\nwas:\n%s", got, outsideBefore)
			}
			if names, _ := filepath.Glob(filepath.Join(lab, ".*tmp*")); len(names) != 0 {
				t.Errorf("temp files left in the lab: %v", names)
			}
			c, err := cache.Open(cacheDir, nil)
			if err != nil {
				t.Fatal(err)
			}
			blobs, _ := c.List()
			if (len(blobs) == 1) != tc.imported {
				t.Errorf("%d blobs in the cache, imported %v", len(blobs), tc.imported)
			}
		})
	}
}

// forged writes a zstd bundle whose index declares a 1 GiB blob, followed
// by 1 MiB of its zeros: a few hundred bytes.
func forged(t *testing.T) string {
	t.Helper()
	d := digestOf([]byte("never seen"))
	idx, _ := json.Marshal(map[string]any{"format": 1, "blobs": []map[string]any{{"digest": d, "size": 1 << 30}}, "refs": map[string]string{}})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "labbake-bundle.json", Mode: 0o644, Size: int64(len(idx)), Typeflag: tar.TypeReg})
	tw.Write(idx)
	tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + d[7:], Mode: 0o644, Size: 1 << 30, Typeflag: tar.TypeReg})
	tw.Write(make([]byte, 1<<20))
	var z bytes.Buffer
	zw, _ := zstd.NewWriter(&z)
	zw.Write(buf.Bytes())
	zw.Close()
	p := filepath.Join(t.TempDir(), "forged.bundle.zst")
	os.WriteFile(p, z.Bytes(), 0o644)
	return p
}

// Malformed bundles are bad input, exit 2 (issue 9, item 11), and leave the
// cache as it was; a bundle declaring more than it can hold is refused
// before anything goes into ingest/ (item 8).
func TestBundleImportBad(t *testing.T) {
	good, d := makeBundle(t, goodLock, false)
	data, _ := os.ReadFile(good)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	at := bytes.Index(data, []byte("a cached input"))
	tampered := bytes.Clone(data)
	tampered[at] ^= 1
	for _, tc := range []struct {
		name, file, out string
		code            int
	}{
		{"garbage", write("garbage", []byte("hello, world")), "truncated bundle", 2},
		{"truncated", write("truncated", data[:len(data)-600]), "", 2},
		{"tampered", write("tampered", tampered), d, 2},
		{"1 GiB declared in a few hundred bytes", forged(t), "can hold", 2},
		{"a directory", dir, "a directory, not a bundle", 2},
		{"missing", filepath.Join(dir, "missing"), "no such file", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cacheDir := t.TempDir()
			c, err := cache.Open(cacheDir, nil)
			if err != nil {
				t.Fatal(err)
			}
			before := tree(t, cacheDir)
			stdout, stderr, code := run(t, "--cache", cacheDir, "bundle", "import", tc.file)
			if code != tc.code || !strings.Contains(stderr, tc.out) {
				t.Errorf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tc.code, tc.out, stdout, stderr)
			}
			if after := tree(t, cacheDir); after != before {
				t.Errorf("cache changed:\n%s\nwas:\n%s", after, before)
			}
			if c.Has(d) {
				t.Error("blob imported")
			}
		})
	}
}

// A --cache dir labbake did not create keeps everything it held: Open
// sweeps nothing there and prune refuses (issue 9, item 1).
func TestForeignCacheDir(t *testing.T) {
	home := t.TempDir()
	files := map[string]string{
		".bashrc":                 "PS1=$\n",
		"tmp/job.lock":            "",
		"tmp/job/data":            "mine",
		"tmp/build-master-1.lock": "",
		"tmp/build-master-1/data": "mine",
		"ingest/put-123":          "mine",
		"blobs/sha256/" + strings.Repeat("ab", 32): "mine",
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(home, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(home, p), []byte(c), 0o644)
	}
	lab := t.TempDir()
	os.WriteFile(filepath.Join(lab, "lab.yaml"), []byte("name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n"), 0o644)
	if _, stderr, code := run(t, "--cache", home, "cache", "ls"); code != 0 {
		t.Fatalf("cache ls: exit %d: %s", code, stderr)
	}
	good, _ := makeBundle(t, goodLock, true)
	if _, stderr, code := run(t, "-C", lab, "--cache", home, "bundle", "import", good); code != 0 {
		t.Fatalf("bundle import: exit %d: %s", code, stderr)
	}
	_, stderr, code := run(t, "-C", lab, "--cache", home, "cache", "prune")
	if code != 2 || !strings.Contains(stderr, "not a cache directory labbake created") || !strings.Contains(stderr, "removes nothing") {
		t.Errorf("cache prune in a foreign dir: exit %d: %s", code, stderr)
	}
	for p, c := range files {
		if b, err := os.ReadFile(filepath.Join(home, p)); err != nil || string(b) != c {
			t.Errorf("%s: %q, %v; want %q", p, b, err, c)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "CACHEDIR.TAG")); err == nil {
		t.Error("labbake tagged a directory it did not create")
	}
}

// offlineLab is a lab whose one role needs one cached input: an artifact
// pinned by digest, put in the cache beforehand.
func offlineLab(t *testing.T) (lab, cacheDir string) {
	t.Helper()
	lab, cacheDir = t.TempDir(), t.TempDir()
	c, err := cache.Open(cacheDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	tool := "#!/bin/sh\necho tool\n"
	d, _, err := c.Put(context.Background(), strings.NewReader(tool), "")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"lab.yaml":            "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": "base: {dir: rootfs}\ndisk: {size: 300MiB, boot: []}\nartifacts:\n  - {url: https://example.invalid/tool, sha256: \"" + d[7:] + "\", dest: /usr/local/bin/tool}\n",
		"rootfs/etc/hostname": "m\n",
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(lab, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(lab, p), []byte(c), 0o644)
	}
	return lab, cacheDir
}

// bundle export writes its file atomically and reports its real size
// (issue 9, item 12: it stat'ed the file after the rename, ignoring the
// error).
func TestBundleExport(t *testing.T) {
	lab, cacheDir := offlineLab(t)
	out, outside := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(outside, "target"), []byte("precious"), 0o644)
	link := filepath.Join(out, "link.bundle.zst")
	os.Symlink(filepath.Join(outside, "target"), link)
	for _, file := range []string{filepath.Join(out, "lab.bundle.zst"), filepath.Join(out, "lab.bundle"), link} {
		stdout, stderr, code := run(t, "-C", lab, "--cache", cacheDir, "bundle", "export", file, "--all", "--offline")
		if code != 0 {
			t.Fatalf("export %s: exit %d\n%s%s", file, code, stdout, stderr)
		}
		fi, err := os.Lstat(file)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
			t.Fatalf("%s: %v %v; want a 0644 regular file", file, fi, err)
		}
		if want := file + "\t1 blobs\t" + iox.Bytes(fi.Size()) + "\n"; stdout != want {
			t.Errorf("stdout %q, want %q", stdout, want)
		}
		// The bundle carries the input into an empty cache.
		if _, stderr, code := run(t, "-C", t.TempDir(), "--cache", t.TempDir(), "bundle", "import", file); code != 0 {
			t.Errorf("import of %s: exit %d: %s", file, code, stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "target")); string(b) != "precious" {
		t.Errorf("export wrote through a symlink: %q", b)
	}
	if names, _ := filepath.Glob(filepath.Join(out, ".*tmp*")); len(names) != 0 {
		t.Errorf("temp files left: %v", names)
	}
	_, stderr, code := run(t, "-C", lab, "--cache", cacheDir, "bundle", "export", filepath.Join(out, "missing", "b.zst"), "--all", "--offline")
	if code != 1 || !strings.Contains(stderr, "no such file or directory") {
		t.Errorf("export into a missing dir: exit %d: %s", code, stderr)
	}
}

// A build with --cache pointing at a directory holding another program's
// lock file and dir of the same name under tmp/ leaves them alone, and
// leaves no work dir of its own (issue 9, item 1: the sweep removed every
// unlocked tmp/*.lock and its dir).
func TestBuildKeepsForeignTmp(t *testing.T) {
	requireTool(t, "mke2fs")
	lab, cacheDir := offlineLab(t)
	files := map[string]string{
		"tmp/job.lock":            "",
		"tmp/job/state":           "mine",
		"tmp/build-master-1.lock": "",
		"tmp/build-master-1/data": "mine",
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(cacheDir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(cacheDir, p), []byte(c), 0o644)
	}
	out := t.TempDir()
	if stdout, stderr, code := run(t, "-C", lab, "--cache", cacheDir, "--out", out, "build", "master", "--offline"); code != 0 {
		t.Fatalf("build: exit %d\n%s%s", code, stdout, stderr)
	}
	if fi, err := os.Stat(filepath.Join(out, "master.qcow2")); err != nil || fi.Size() < 1<<20 {
		t.Fatalf("no image: %v %v", fi, err)
	}
	for p, c := range files {
		if b, err := os.ReadFile(filepath.Join(cacheDir, p)); err != nil || string(b) != c {
			t.Errorf("%s: %q, %v; want %q", p, b, err, c)
		}
	}
	left, _ := filepath.Glob(filepath.Join(cacheDir, "tmp", "build-master-*"))
	if len(left) != 2 {
		t.Errorf("tmp holds %v: want only the two look-alikes", left)
	}
}

// requireTool skips the test when a host tool the build runs is missing
// (also looked for in sbin), or fails it when LABBAKE_REQUIRE_TOOLS is set.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return
		}
	}
	if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s not found (run make deps)", name)
	}
	t.Skipf("%s not found (run make deps)", name)
}
