package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/labbake/labbake/builders/space"
	"github.com/labbake/labbake/internal/golden"
)

// A build of a tar-based lab reports what takes the space in its manifest
// and under the image's line; labbake du prints it. The numbers are checked
// against the image's root file system as e2fsprogs reads it back (debugfs
// rdump): every regular file's size, summed and grouped three levels deep.
func TestBuildSpace(t *testing.T) {
	requireTool(t, "mke2fs")
	requireTool(t, "debugfs")
	lab := t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml": "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": "base: {tar: base.tar}\nlayers: [{tar: layer.tar}]\n" +
			"files: [{path: /etc/motd, content: \"hello\\n\"}]\ndisk: {size: 300MiB, boot: []}\n",
	})
	writeTarFile(t, filepath.Join(lab, "base.tar"), map[string]string{
		"etc/hostname":                               "localhost\n",
		"usr/bin/tool":                               strings.Repeat("t", 300<<10),
		"usr/bin/old":                                strings.Repeat("o", 5000),
		"usr/lib/x86_64-linux-gnu/libbig.so.1":       strings.Repeat("l", 1<<20),
		"usr/share/locale/de/LC_MESSAGES/tool.mo":    strings.Repeat("m", 20000),
		"var/lib/dpkg/info/tool.list":                "/.\n/usr\n/usr/bin\n/usr/bin/tool\n/usr/bin/old\n/usr/share/locale/de/LC_MESSAGES/tool.mo\n",
		"var/lib/dpkg/info/libbig1:amd64.list":       "/.\n/usr/lib/x86_64-linux-gnu/libbig.so.1\n",
		"var/lib/dpkg/status":                        "Package: tool\n",
		"boot/initrd.img-6.12.0-1-amd64":             strings.Repeat("i", 700<<10),
		"usr/lib/modules/6.12.0-1-amd64/kernel/a.ko": strings.Repeat("k", 40000),
	})
	writeTarFile(t, filepath.Join(lab, "layer.tar"), map[string]string{
		"usr/local/bin/kubelet": strings.Repeat("K", 2<<20),
		"usr/bin/old":           strings.Repeat("n", 100), // replaces the package's file
	})
	out := t.TempDir()
	stdout, stderr, code := run(t, "-C", lab, "--cache", t.TempDir(), "--out", out, "build", "master", "--keep-raw")
	if code != 0 {
		t.Fatalf("build: exit %d\n%s%s", code, stdout, stderr)
	}
	const summary = "  space: 4.0 MiB in 16 files: /usr/local/bin 2.0 MiB, /usr/lib/x86_64-linux-gnu 1.0 MiB, /boot 700.0 KiB, /usr/bin 300.1 KiB, /usr/lib/modules 39.1 KiB, … (labbake du master)\n"
	if lines := strings.SplitAfter(stdout, "\n"); len(lines) < 2 || !strings.Contains(lines[0], "master.qcow2") || lines[1] != summary {
		t.Errorf("build's stdout, want the image's line then\n%q\ngot\n%s", summary, stdout)
	}

	var m struct {
		Space      *space.Report
		Partitions []struct{ Offset int64 }
	}
	b, err := os.ReadFile(filepath.Join(out, "master.manifest.json"))
	if err != nil || json.Unmarshal(b, &m) != nil || m.Space == nil {
		t.Fatalf("manifest: %v\n%s", err, b)
	}
	r := m.Space
	wantOrigins := []string{"base", "layers[0] layer.tar", "labbake checks", "fstab", "files"}
	var origins []string
	for _, u := range r.Origins {
		origins = append(origins, u.Name)
	}
	if !slices.Equal(origins, wantOrigins) {
		t.Errorf("origins %q, want %q", origins, wantOrigins)
	}
	var pkgs []string
	for _, u := range r.Packages {
		pkgs = append(pkgs, fmt.Sprintf("%s %d %d", u.Name, u.Bytes, u.Files))
	}
	// tool's /usr/bin/old came from the layer: not the package's. The
	// initramfs, a.ko, /etc/hostname and dpkg's own files are in none.
	wantPkgs := []string{"libbig1:amd64 1048576 1", "(no package) 756950 6", "tool 327200 2"}
	if !slices.Equal(pkgs, wantPkgs) {
		t.Errorf("packages %q, want %q", pkgs, wantPkgs)
	}

	// The root file system, read back by debugfs.
	dump := t.TempDir()
	dev := fmt.Sprintf("%s?offset=%d", filepath.Join(out, "master.raw"), m.Partitions[len(m.Partitions)-1].Offset)
	if o, err := exec.Command("debugfs", "-R", "rdump / "+dump, dev).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, o)
	}
	var total int64
	var files int
	sizes := map[string]int64{}
	dirs := map[string]space.Use{}
	err = filepath.WalkDir(dump, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dump, p)
		if rel == "lost+found" || strings.HasPrefix(rel, "lost+found/") {
			return nil
		}
		total += fi.Size()
		files++
		sizes["/"+rel] = fi.Size()
		dir := filepath.Dir("/" + rel)
		if parts := strings.Split(rel, "/"); len(parts) > 3 {
			dir = "/" + strings.Join(parts[:3], "/")
		}
		u := dirs[dir]
		u.Name, u.Bytes, u.Files = dir, u.Bytes+fi.Size(), u.Files+1
		dirs[dir] = u
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes != total || r.Files != files {
		t.Errorf("manifest: %d bytes in %d files; the image holds %d in %d", r.Bytes, r.Files, total, files)
	}
	gotDirs := map[string]space.Use{}
	for _, u := range r.Dirs {
		gotDirs[u.Name] = u
	}
	if !reflect.DeepEqual(gotDirs, dirs) {
		t.Errorf("manifest dirs %v\nthe image's %v", gotDirs, dirs)
	}
	for _, f := range r.Largest {
		if sizes[f.Path] != f.Bytes {
			t.Errorf("largest: %s %d bytes, the image's %d", f.Path, f.Bytes, sizes[f.Path])
		}
	}

	stdout, stderr, code = run(t, "-C", lab, "--out", out, "du", "master")
	if code != 0 {
		t.Fatalf("du: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"master (master.qcow2, ",
		"\nby stage\n   2.0 MiB       9  base\n   2.0 MiB       2  layers[0] layer.tar\n",
		"\nby directory (3 levels deep)\n   2.0 MiB       1  /usr/local/bin\n",
		"\nby package\n   1.0 MiB       1  libbig1:amd64\n",
		"\nlargest files\n   2.0 MiB  /usr/local/bin/kubelet  (layers[0] layer.tar)\n   1.0 MiB  /usr/lib/x86_64-linux-gnu/libbig.so.1  (base, package libbig1:amd64)\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("du's output lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, code = run(t, "-C", lab, "--out", out, "du", "--all", "--json")
	var reports []*space.Report
	if code != 0 || json.Unmarshal([]byte(stdout), &reports) != nil || len(reports) != 1 || !reflect.DeepEqual(reports[0], r) {
		t.Errorf("du --all --json: exit %d, want the manifest's space section in an array:\n%s", code, stdout)
	}
	if _, stderr, code := run(t, "-C", lab, "--out", out, "du", "node"); code != 2 || !strings.Contains(stderr, "run labbake build node first") {
		t.Errorf("du of a role not built: exit %d, %s", code, stderr)
	}
}

// labbake du's text, for review.
func TestPrintSpace(t *testing.T) {
	r := &space.Report{
		Bytes: 1600 << 20, Files: 20000, Depth: 3,
		Origins: []space.Use{{Name: "base", Bytes: 900 << 20, Files: 19000}, {Name: "artifacts[0]", Bytes: 600 << 20, Files: 10}, {Name: "images", Bytes: 100 << 20, Files: 990}},
		Dirs:    []space.Use{{Name: "/usr/local/bin", Bytes: 600 << 20, Files: 10}, {Name: "/usr/lib/x86_64-linux-gnu", Bytes: 300 << 20, Files: 2000}},
		Packages: []space.Use{
			{Name: "linux-image-6.12.0-1-amd64", Bytes: 120 << 20, Files: 4000}, {Name: space.NoPackage, Bytes: 60 << 20, Files: 300},
		},
		Largest: []space.File{
			{Path: "/usr/local/bin/kubelet", Bytes: 80 << 20, Origin: "artifacts[0]"},
			{Path: "/boot/initrd.img-6.12.0-1-amd64", Bytes: 37 << 20, Origin: "base", Package: space.NoPackage},
		},
	}
	var b bytes.Buffer
	printSpace(&b, "master (master.qcow2, 700.0 MiB)", r)
	fmt.Fprintf(&b, "---\n%s\n", spaceSummary(r, 1))
	golden.Check(t, filepath.Join("testdata", "du.txt"), b.Bytes())
}
