package tree

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestApplyDir(t *testing.T) {
	host := t.TempDir()
	write := func(rel, body string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(host, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/motd", "hello\n", 0o644)
	write("usr/bin/tool", "#!/bin/sh\n", 0o4755|os.ModeSetuid)
	write("etc/config.yaml.tmpl", "{{ .x }}", 0o644)
	write("skipped/inner", "x", 0o644)
	write("lib/mod.conf", "m", 0o644) // tree has lib -> usr/lib
	write("pair/a", "shared", 0o640)
	if err := os.Link(filepath.Join(host, "pair/a"), filepath.Join(host, "pair/b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(host, "hostetc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../etc/motd", filepath.Join(host, "relmotd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(host, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(host, "tmp"), 0o1777|os.ModeSticky)
	if err := syscall.Mkfifo(filepath.Join(host, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(host, "sock")
	if l, err := net.Listen("unix", sock); err == nil {
		defer l.Close()
	} else {
		t.Logf("no unix socket: %v", err)
	}
	// The tree already has /root (0700) and lib -> usr/lib; the checkout's
	// root/ (0755) must not loosen /root.
	if err := os.MkdirAll(filepath.Join(host, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("root/.profile", "p", 0o644)

	tr := New(testEpoch)
	tr.Add(Entry{Path: "root", Type: Dir, Mode: 0o700})
	tr.Add(Entry{Path: "usr/lib", Type: Dir, Mode: 0o755})
	tr.Add(Entry{Path: "lib", Type: Symlink, Linkname: "usr/lib"})
	skip := func(rel string) bool { return strings.HasSuffix(rel, ".tmpl") || rel == "skipped" }
	if err := tr.ApplyDir(host, "", skip); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, tr, "")

	if e := mustGet(t, tr, "etc/motd"); e.Type != Regular || e.Content.Owned || e.Content.Path != filepath.Join(host, "etc/motd") ||
		e.Content.Size != 6 || e.UID != 0 || e.GID != 0 || !e.ModTime.Equal(testEpoch) || e.Mode != 0o644 {
		t.Errorf("etc/motd = %+v %+v", e, e.Content)
	}
	if e := mustGet(t, tr, "usr/bin/tool"); e.Mode != 0o4755 {
		t.Errorf("setuid mode = %#o", e.Mode)
	}
	if e := mustGet(t, tr, "tmp"); e.Mode != 0o1777 {
		t.Errorf("sticky mode = %#o", e.Mode)
	}
	if e := mustGet(t, tr, "hostetc"); e.Type != Symlink || e.Linkname != "/etc" {
		t.Errorf("hostetc = %+v", e)
	}
	if _, ok := tr.Get("hostetc/passwd"); ok {
		t.Error("host symlink followed")
	}
	if _, ok := tr.Get("etc/passwd"); ok {
		t.Error("host /etc copied")
	}
	if e := mustGet(t, tr, "relmotd"); e.Linkname != "../etc/motd" {
		t.Errorf("relmotd = %+v", e)
	}
	a, b := mustGet(t, tr, "pair/a"), mustGet(t, tr, "pair/b")
	if a.Type != Regular || b.Type != Hardlink || b.Linkname != "pair/a" || a.Mode != 0o640 {
		t.Errorf("pair = %+v / %+v", a, b)
	}
	if e := mustGet(t, tr, "fifo"); e.Type != FIFO || e.Mode != 0o600 {
		t.Errorf("fifo = %+v", e)
	}
	for _, p := range []string{"sock", "etc/config.yaml.tmpl", "skipped", "skipped/inner", "lib/mod.conf"} {
		if _, ok := tr.Get(p); ok {
			t.Errorf("%s should not be in the tree", p)
		}
	}
	mustGet(t, tr, "usr/lib/mod.conf")
	if e := mustGet(t, tr, "root"); e.Mode != 0o700 {
		t.Errorf("existing /root changed to %#o", e.Mode)
	}
	mustGet(t, tr, "root/.profile")

	// With a prefix.
	tr2 := New(testEpoch)
	if err := tr2.ApplyDir(filepath.Join(host, "etc"), "/opt/app/", nil); err != nil {
		t.Fatal(err)
	}
	mustGet(t, tr2, "opt/app/motd")
	mustGet(t, tr2, "opt/app/config.yaml.tmpl")
	if err := tr2.ApplyDir(host, "../x", nil); err == nil || !strings.Contains(err.Error(), "leaves the root") {
		t.Errorf("prefix out of the root: err = %v", err)
	}
	if err := tr2.ApplyDir(filepath.Join(host, "missing"), "", nil); err == nil {
		t.Error("missing dir: no error")
	}
}

func TestApplyDirDevice(t *testing.T) {
	host := t.TempDir()
	err := syscall.Mknod(filepath.Join(host, "null"), syscall.S_IFCHR|0o666, int(1<<8|3))
	if err != nil {
		t.Skipf("mknod: %v", err)
	}
	tr := New(testEpoch)
	if err := tr.ApplyDir(host, "dev", nil); err != nil {
		t.Fatal(err)
	}
	if e := mustGet(t, tr, "dev/null"); e.Type != CharDev || e.Devmajor != 1 || e.Devminor != 3 {
		t.Errorf("dev/null = %+v", e)
	}
}

// A dir: base or an overlay may be a symlink to a directory (or a chain of
// them): its content is added, not just its top directory.
func TestApplyDirSymlinkedRoot(t *testing.T) {
	host := t.TempDir()
	real := filepath.Join(host, "real")
	if err := os.MkdirAll(filepath.Join(real, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "etc/motd"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "plain"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"real", "link"}, {"link", "link2"}, {"plain", "filelink"}} {
		if err := os.Symlink(l[0], filepath.Join(host, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		dir     string
		wantErr string
	}{
		{"link", ""},
		{"link2", ""},
		{"filelink", "not a directory"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			tr := New(testEpoch)
			err := tr.ApplyDir(filepath.Join(host, tc.dir), "opt", nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ApplyDir = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, tr, "")
			if got := content(t, tr, "opt/etc/motd"); got != "hi\n" {
				t.Errorf("opt/etc/motd = %q", got)
			}
			if e := mustGet(t, tr, "opt/etc/motd"); e.Content.Path != filepath.Join(real, "etc/motd") {
				t.Errorf("blob path %s", e.Content.Path)
			}
		})
	}
}
