package space

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/golden"
)

// stage is what one build stage adds to a test tree, under its origin.
type stage struct {
	origin string
	files  map[string]int    // path → size (bytes of 'x'), or a dpkg list when the path ends in .list
	lists  map[string]string // dpkg list path → content
	links  map[string]string // hardlink path → target
	syms   map[string]string // symlink path → target
	remove []string
}

func buildTree(t testing.TB, stages ...stage) *tree.Tree {
	t.Helper()
	tr := tree.New(time.Unix(1.7e9, 0))
	blobs := filepath.Join(t.TempDir(), "blobs")
	for _, s := range stages {
		tr.SetOrigin(s.origin)
		for _, p := range s.remove {
			tr.Remove(p)
		}
		var files []tree.File
		for p, n := range s.files {
			files = append(files, tree.File{Path: p, Content: []byte(strings.Repeat("x", n))})
		}
		for p, c := range s.lists {
			files = append(files, tree.File{Path: p, Content: []byte(c)})
		}
		for p, target := range s.syms {
			files = append(files, tree.File{Path: p, Symlink: target})
		}
		if err := tr.AddFiles(files, blobs); err != nil {
			t.Fatal(err)
		}
		for p, target := range s.links {
			if err := tr.Add(tree.Entry{Path: p, Type: tree.Hardlink, Linkname: target}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tr
}

// debianBase is a merged-/usr base with a dpkg database: coreutils lists
// /bin/ls (a path through the /bin symlink), libc6 /usr/lib/libc.so and a
// directory; the initramfs and the dpkg files themselves are in no package.
var debianBase = stage{
	origin: "base",
	syms:   map[string]string{"/bin": "usr/bin"},
	files: map[string]int{
		"/usr/bin/ls":          140,
		"/usr/bin/cat":         40,
		"/usr/lib/libc.so":     2000,
		"/boot/initrd.img":     3000,
		"/usr/share/doc/x/cr":  10,
		"/etc/hostname":        10,
		"/var/lib/dpkg/status": 100,
	},
	lists: map[string]string{
		"/var/lib/dpkg/info/coreutils.list":   "/.\n/bin\n/bin/ls\n/usr/bin/cat\n/usr/share/doc/x/cr\n",
		"/var/lib/dpkg/info/libc6:amd64.list": "/.\n/usr/lib\n/usr/lib/libc.so\n/usr/lib/missing.so\n\n/usr/bin/cat\n",
	},
}

func TestMeasure(t *testing.T) {
	var listBytes int64
	for _, c := range debianBase.lists {
		listBytes += int64(len(c))
	}
	for _, tc := range []struct {
		name   string
		stages []stage
		opts   Options
		want   Report
	}{
		{
			name: "empty tree",
			want: Report{Depth: DefaultDepth, Origins: []Use{}, Dirs: []Use{}, Largest: []File{}},
		},
		{
			name: "a hardlinked file counts once, symlinks and directories not at all",
			stages: []stage{{
				origin: "base",
				files:  map[string]int{"/usr/bin/a": 10},
				links:  map[string]string{"/usr/bin/b": "/usr/bin/a", "/usr/sbin/c": "/usr/bin/a"},
				syms:   map[string]string{"/usr/bin/d": "a"},
			}},
			want: Report{
				Bytes: 10, Files: 1, Depth: DefaultDepth,
				Origins: []Use{{"base", 10, 1}},
				Dirs:    []Use{{"/usr/bin", 10, 1}},
				Largest: []File{{Path: "/usr/bin/a", Bytes: 10, Origin: "base"}},
			},
		},
		{
			name: "a file a later stage replaces or removes counts for that stage or not at all",
			stages: []stage{
				{origin: "base", files: map[string]int{"/usr/bin/k": 100, "/usr/bin/gone": 7, "/etc/x": 1}},
				{origin: "layers[0] l.tar", files: map[string]int{"/usr/bin/k": 60}, remove: []string{"/usr/bin/gone"}},
				{origin: "", files: map[string]int{"/etc/fstab": 5}},
			},
			want: Report{
				Bytes: 66, Files: 3, Depth: DefaultDepth,
				Origins: []Use{{"layers[0] l.tar", 60, 1}, {"-", 5, 1}, {"base", 1, 1}},
				Dirs:    []Use{{"/usr/bin", 60, 1}, {"/etc", 6, 2}},
				Largest: []File{
					{Path: "/usr/bin/k", Bytes: 60, Origin: "layers[0] l.tar"},
					{Path: "/etc/fstab", Bytes: 5, Origin: "-"},
					{Path: "/etc/x", Bytes: 1, Origin: "base"},
				},
			},
		},
		{
			name: "directories at the depth; shallower files in their own; ties by name; cut at the counts",
			stages: []stage{{
				origin: "base",
				files: map[string]int{
					"/vmlinuz":                              4,
					"/etc/passwd":                           3,
					"/usr/lib/modules/6.12/kernel/a/b/c.ko": 50,
					"/usr/lib/modules/6.12/modules.dep":     20,
					"/usr/lib/modules/README":               1,
					"/usr/local/bin/kubelet":                30,
					"/usr/local/bin/kubectl":                30,
					"/var/lib/containerd/io.c/blobs/1":      9,
				},
			}},
			opts: Options{Dirs: 3, Largest: 4},
			want: Report{
				Bytes: 147, Files: 8, Depth: 3,
				Origins: []Use{{"base", 147, 8}},
				Dirs:    []Use{{"/usr/lib/modules", 71, 3}, {"/usr/local/bin", 60, 2}, {"/var/lib/containerd", 9, 1}},
				Largest: []File{
					{Path: "/usr/lib/modules/6.12/kernel/a/b/c.ko", Bytes: 50, Origin: "base"},
					{Path: "/usr/local/bin/kubectl", Bytes: 30, Origin: "base"},
					{Path: "/usr/local/bin/kubelet", Bytes: 30, Origin: "base"},
					{Path: "/usr/lib/modules/6.12/modules.dep", Bytes: 20, Origin: "base"},
				},
			},
		},
		{
			name: "depth 1",
			stages: []stage{{
				origin: "base",
				files:  map[string]int{"/vmlinuz": 4, "/etc/passwd": 3, "/usr/lib/x/y": 5, "/usr/bin/z": 5},
			}},
			opts: Options{Depth: 1, Largest: 1},
			want: Report{
				Bytes: 17, Files: 4, Depth: 1,
				Origins: []Use{{"base", 17, 4}},
				Dirs:    []Use{{"/usr", 10, 2}, {"/", 4, 1}, {"/etc", 3, 1}},
				Largest: []File{{Path: "/usr/bin/z", Bytes: 5, Origin: "base"}},
			},
		},
		{
			name: "packages: listed files of the stage with the dpkg database, through symlinks; replaced ones and other stages' not",
			stages: []stage{
				debianBase,
				{origin: "overlays[0] o", files: map[string]int{"/usr/bin/cat": 45, "/usr/local/bin/k": 500}},
			},
			opts: Options{Largest: 3},
			want: Report{
				Bytes: 140 + 45 + 2000 + 3000 + 10 + 10 + 100 + listBytes + 500, Files: 10, Depth: 3,
				Origins: []Use{{"base", 140 + 2000 + 3000 + 10 + 10 + 100 + listBytes, 8}, {"overlays[0] o", 545, 2}},
				Dirs: []Use{
					{"/boot", 3000, 1}, {"/usr/lib", 2000, 1}, {"/usr/local/bin", 500, 1},
					{"/var/lib/dpkg", 100 + listBytes, 3}, {"/usr/bin", 185, 2}, {"/etc", 10, 1}, {"/usr/share/doc", 10, 1},
				},
				Packages: []Use{
					{NoPackage, 3000 + 10 + 100 + listBytes, 5},
					{"libc6:amd64", 2000, 1},
					{"coreutils", 150, 2},
				},
				Largest: []File{
					{Path: "/boot/initrd.img", Bytes: 3000, Origin: "base", Package: NoPackage},
					{Path: "/usr/lib/libc.so", Bytes: 2000, Origin: "base", Package: "libc6:amd64"},
					{Path: "/usr/local/bin/k", Bytes: 500, Origin: "overlays[0] o"},
				},
			},
		},
		{
			name:   "packages cut at the count",
			stages: []stage{debianBase},
			opts:   Options{Packages: 1, Largest: 1},
			want: Report{
				Bytes: 3000 + 2000 + 140 + 40 + 10 + 10 + 100 + listBytes, Files: 9, Depth: 3,
				Origins: []Use{{"base", 3000 + 2000 + 140 + 40 + 10 + 10 + 100 + listBytes, 9}},
				Dirs: []Use{
					{"/boot", 3000, 1}, {"/usr/lib", 2000, 1}, {"/var/lib/dpkg", 100 + listBytes, 3},
					{"/usr/bin", 180, 2}, {"/etc", 10, 1}, {"/usr/share/doc", 10, 1},
				},
				Packages: []Use{{NoPackage, 3000 + 10 + 100 + listBytes, 5}},
				Largest:  []File{{Path: "/boot/initrd.img", Bytes: 3000, Origin: "base", Package: NoPackage}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Measure(buildTree(t, tc.stages...), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				w, _ := json.MarshalIndent(tc.want, "", "  ")
				t.Errorf("got\n%s\nwant\n%s", g, w)
			}
			var sum int64
			for _, u := range got.Origins {
				sum += u.Bytes
			}
			if sum != got.Bytes {
				t.Errorf("origins sum to %d bytes, the total is %d", sum, got.Bytes)
			}
		})
	}
}

func TestDirAt(t *testing.T) {
	for _, tc := range []struct {
		path  string
		depth int
		want  string
	}{
		{"vmlinuz", 3, "/"},
		{"etc/passwd", 3, "/etc"},
		{"usr/bin/ls", 3, "/usr/bin"},
		{"usr/lib/modules/README", 3, "/usr/lib/modules"},
		{"usr/lib/modules/6.12/kernel/x.ko", 3, "/usr/lib/modules"},
		{"usr/lib/modules/6.12/kernel/x.ko", 4, "/usr/lib/modules/6.12"},
		{"usr/lib/modules/6.12/kernel/x.ko", 1, "/usr"},
	} {
		if got := dirAt(tc.path, tc.depth); got != tc.want {
			t.Errorf("dirAt(%q, %d) = %q, want %q", tc.path, tc.depth, got, tc.want)
		}
	}
}

// A dpkg list that cannot be read is an error naming it.
func TestMeasureUnreadableList(t *testing.T) {
	tr := buildTree(t, debianBase)
	e, _ := tr.Get("var/lib/dpkg/info/coreutils.list")
	e.Content.Path = filepath.Join(t.TempDir(), "gone")
	e.Content.Owned = false
	if err := tr.Add(e); err != nil {
		t.Fatal(err)
	}
	_, err := Measure(tr, Options{})
	if err == nil || !strings.Contains(err.Error(), "/var/lib/dpkg/info/coreutils.list") {
		t.Errorf("err = %v, want one naming the list", err)
	}
}

// The manifest's space section of a small Debian-like image, as JSON.
func TestReportGolden(t *testing.T) {
	tr := buildTree(t,
		debianBase,
		stage{origin: "artifacts[0]", files: map[string]int{"/usr/local/bin/kubelet": 7000, "/usr/local/bin/kubectl": 4000}},
		stage{origin: "images", files: map[string]int{
			"/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/aa": 900,
			"/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db":           64,
		}},
		stage{origin: "units", files: map[string]int{"/etc/systemd/system/kubelet.service": 300}},
		stage{origin: "boot", files: map[string]int{"/boot/efi/EFI/BOOT/BOOTX64.EFI": 120}},
	)
	r, err := Measure(tr, Options{Largest: 5})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "report.json"), append(b, '\n'))
}

// benchTree is a Debian-like tree of files regular files in dirs of 50,
// 300 dpkg lists naming them, and a hardlink every 500 files.
func benchTree(b *testing.B, files int) *tree.Tree {
	tr := tree.New(time.Unix(1.7e9, 0))
	tr.SetOrigin("base")
	blobs := filepath.Join(b.TempDir(), "blobs")
	const pkgs = 300
	lists := make([]strings.Builder, pkgs)
	for i := range files {
		p := fmt.Sprintf("/usr/lib/d%03d/sub%04d/file%05d", i%7, i/50, i)
		if err := tr.Add(tree.Entry{Path: p, Type: tree.Regular, Mode: 0o644, Content: &tree.Blob{Path: "/nonexistent", Size: int64(i%4096 + 1)}}); err != nil {
			b.Fatal(err)
		}
		if i%500 == 0 {
			if err := tr.Add(tree.Entry{Path: p + ".lnk", Type: tree.Hardlink, Linkname: p}); err != nil {
				b.Fatal(err)
			}
		}
		if i%10 != 0 { // a tenth in no package
			fmt.Fprintf(&lists[i%pkgs], "%s\n", p)
		}
	}
	var fs []tree.File
	for i := range lists {
		fs = append(fs, tree.File{Path: fmt.Sprintf("/var/lib/dpkg/info/pkg%03d.list", i), Content: []byte(lists[i].String())})
	}
	if err := tr.AddFiles(fs, blobs); err != nil {
		b.Fatal(err)
	}
	return tr
}

// BenchmarkMeasure measures a 20k-file tree (go test -bench Measure
// -run '^$' ./builders/space).
func BenchmarkMeasure(b *testing.B) {
	tr := benchTree(b, 20000)
	b.ResetTimer()
	for b.Loop() {
		r, err := Measure(tr, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if r.Files != 20300 || len(r.Packages) != DefaultPackages {
			b.Fatalf("files %d, packages %d", r.Files, len(r.Packages))
		}
	}
}
