package cli

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/internal/testfs"
)

// writeTarFile writes a tar of name → content (regular files, 0644).
func writeTarFile(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		c := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// openWatch counts the opens of files by anyone, with inotify: IN_OPEN
// and IN_CLOSE_NOWRITE alternate for each read of a file, so no two
// queued events are alike and none are merged.
type openWatch struct {
	fd  int
	wds map[int32]string
}

func watchOpens(t *testing.T, paths ...string) *openWatch {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	w := &openWatch{fd: fd, wds: map[int32]string{}}
	for _, p := range paths {
		wd, err := unix.InotifyAddWatch(fd, p, unix.IN_OPEN|unix.IN_CLOSE_NOWRITE)
		if err != nil {
			t.Fatal(err)
		}
		w.wds[int32(wd)] = p
	}
	return w
}

// opens returns how often each watched file was opened so far.
func (w *openWatch) opens(t *testing.T) map[string]int {
	t.Helper()
	n := map[string]int{}
	buf := make([]byte, 64<<10)
	for {
		k, err := unix.Read(w.fd, buf)
		if err == unix.EAGAIN {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			if mask&unix.IN_OPEN != 0 {
				n[w.wds[wd]]++
			}
			if mask&unix.IN_Q_OVERFLOW != 0 {
				t.Fatal("inotify queue overflowed")
			}
			off += unix.SizeofInotifyEvent + nameLen
		}
	}
}

// build --all of two roles with tar bases reads each base once: the tree
// applies it and the plan takes the digest hashed on the way (issue 9:
// the CLI resolved each role, then bake.Build resolved again and read the
// base for the tree besides, so each base was opened 3 times and hashed
// twice). A base two roles share is read once by each.
func TestBuildReadsEachBaseOnce(t *testing.T) {
	requireTool(t, "mke2fs")
	lab := t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":            "name: t\nnodes:\n  - {name: m, role: master, ip: 172.18.0.2}\n  - {name: w, role: worker, ip: 172.18.0.3}\n  - {name: s, role: spare, ip: 172.18.0.4}\n",
		"recipes/master.yaml": "base: {tar: master.tar}\ndisk: {size: 300MiB, boot: []}\n",
		"recipes/worker.yaml": "base: {tar: worker.tar}\nlayers: [{tar: shared.tar}]\ndisk: {size: 300MiB, boot: []}\n",
		"recipes/spare.yaml":  "base: {tar: shared.tar}\ndisk: {size: 300MiB, boot: []}\n",
	})
	tars := map[string]string{}
	for _, name := range []string{"master", "worker", "shared"} {
		tars[name] = filepath.Join(lab, name+".tar")
		writeTarFile(t, tars[name], map[string]string{
			"etc/hostname":                name + "\n",
			"usr/share/" + name + "/data": strings.Repeat(name, 300<<10), // past the reader's buffer
			"var/lib/dpkg/status":         "Package: " + name + "-tools\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0-1\n",
		})
	}
	w := watchOpens(t, tars["master"], tars["worker"], tars["shared"])
	out := t.TempDir()
	stdout, stderr, code := run(t, "-C", lab, "--cache", t.TempDir(), "--out", out, "build", "--all")
	if code != 0 {
		t.Fatalf("build --all: exit %d\n%s%s", code, stdout, stderr)
	}
	got := w.opens(t)
	t.Logf("opens: master.tar %d, worker.tar %d, shared.tar %d", got[tars["master"]], got[tars["worker"]], got[tars["shared"]])
	want := map[string]int{tars["master"]: 1, tars["worker"]: 1, tars["shared"]: 2}
	for p, n := range want {
		if got[p] != n {
			t.Errorf("%s opened %d times, want %d", filepath.Base(p), got[p], n)
		}
	}
	for _, role := range []string{"master", "worker", "spare"} {
		if _, err := os.Stat(filepath.Join(out, role+".qcow2")); err != nil {
			t.Error(err)
		}
	}
	// worker's layer replaces its base's dpkg status.
	checkPublished(t, out, map[string]string{"master": "master-tools", "worker": "shared-tools", "spare": "shared-tools"})
	// The plan the image records is the one labbake plan prints, which
	// reads the files itself: the digests hashed on the way are right.
	for _, role := range []string{"master", "worker", "spare"} {
		planOut, stderr, code := run(t, "-C", lab, "--cache", t.TempDir(), "plan", role)
		manifest, err := os.ReadFile(filepath.Join(out, role+".manifest.json"))
		if code != 0 || err != nil {
			t.Fatalf("plan %s: exit %d, %v\n%s", role, code, err, stderr)
		}
		digest := strings.Fields(strings.SplitN(planOut, "\n", 3)[1])[1]
		if !strings.Contains(string(manifest), `"plan_digest": "`+digest+`"`) {
			t.Errorf("%s: labbake plan says %s, the manifest:\n%s", role, digest, manifest)
		}
	}
	// plan --all --json: an array of every role's plan, in lab.yaml's
	// order, with the digests the images record.
	planOut, stderr, code := run(t, "-C", lab, "--cache", t.TempDir(), "plan", "--all", "--json")
	var plans []struct {
		Role   string `json:"role"`
		Digest string `json:"digest"`
	}
	if code != 0 {
		t.Fatalf("plan --all --json: exit %d\n%s", code, stderr)
	}
	if err := json.Unmarshal([]byte(planOut), &plans); err != nil {
		t.Fatalf("plan --all --json: %v\n%s", err, planOut)
	}
	if len(plans) != 3 {
		t.Fatalf("plan --all --json gave %d plans, want 3", len(plans))
	}
	for _, p := range plans {
		manifest, err := os.ReadFile(filepath.Join(out, p.Role+".manifest.json"))
		if err != nil || !strings.Contains(string(manifest), `"plan_digest": "`+p.Digest+`"`) {
			t.Errorf("plan --all --json: %s has digest %q; %v\n%s", p.Role, p.Digest, err, manifest)
		}
	}
}

// checkPublished wants each role's SBOM in out, named by its manifest, to
// list the Debian package its base brought, and OUT/SHA256SUMS to list
// every image, manifest and SBOM, as sha256sum -c checks.
func checkPublished(t *testing.T, out string, debs map[string]string) {
	t.Helper()
	for role, deb := range debs {
		var m struct {
			SBOM struct{ File, SHA256 string } `json:"sbom"`
		}
		b, err := os.ReadFile(filepath.Join(out, role+".manifest.json"))
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil || m.SBOM.File != role+".spdx.json" {
			t.Errorf("%s: manifest sbom %+v, %v", role, m.SBOM, err)
			continue
		}
		b, err = os.ReadFile(filepath.Join(out, m.SBOM.File))
		if sum := sha256.Sum256(b); err != nil || hex.EncodeToString(sum[:]) != m.SBOM.SHA256 {
			t.Errorf("%s: %s: %v, or not the sha256 the manifest gives", role, m.SBOM.File, err)
		}
		if purl := "pkg:deb/debian/" + deb + "@1.0-1?arch=amd64"; !strings.Contains(string(b), `"`+purl+`"`) {
			t.Errorf("%s: the SBOM does not list %s:\n%s", role, purl, b)
		}
	}
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if n := strings.Count(string(sums), "\n"); err != nil || n != 3*len(debs) {
		t.Errorf("SHA256SUMS: %d lines, want %d; %v\n%s", n, 3*len(debs), err, sums)
	}
	requireTool(t, "sha256sum")
	cmd := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, b)
	}
}

// Content larger than the disk is refused at disk.size, exit 2, before
// anything is written (issue 9, item 7: mke2fs failed, exit 1, after the
// output dir was made): files the build extracted are counted before the
// disk is written; the host's files of a dir base, which mke2fs may store
// sparser than the host does, when mke2fs runs out of room. A sparse file
// larger than the disk is no reason to refuse.
func TestBuildContentLargerThanDisk(t *testing.T) {
	requireTool(t, "mke2fs")
	const lab = "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n"
	full := strings.Repeat("labbake!", 5<<20) // 40 MiB, no zero block; the root of 235MiB holds 32 MiB
	for _, tc := range []struct {
		name   string
		recipe string
		files  map[string]string
		sparse string // a file of 400 MiB of holes at this path
		want   string // "" : the build succeeds
	}{
		{"tar base", "base: {tar: rootfs.tar}\ndisk: {size: 235MiB, boot: []}\n", nil, "",
			"recipes/master.yaml:2:14: disk.size: 235MiB is too small for the image's files: its root file system holds 32.0 MiB and the files take at least"},
		{"dir base", "base: {dir: rootfs}\ndisk: {size: 235MiB, boot: []}\n", map[string]string{"rootfs/big": full}, "",
			"recipes/master.yaml:2:14: disk.size: 235MiB is too small for the image's files: its root file system holds 32.0 MiB and mke2fs ran out of room"},
		{"sparse file larger than the disk", "base: {dir: rootfs}\ndisk: {size: 300MiB, boot: []}\n", map[string]string{"rootfs/etc/hostname": "m\n"}, "rootfs/big", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"lab.yaml": lab, "recipes/master.yaml": tc.recipe}
			for k, v := range tc.files {
				files[k] = v
			}
			writeFiles(t, dir, files)
			writeTarFile(t, filepath.Join(dir, "rootfs.tar"), map[string]string{"big": full})
			if tc.sparse != "" {
				f, err := os.Create(filepath.Join(dir, tc.sparse))
				if err != nil {
					t.Fatal(err)
				}
				if err := f.Truncate(400 << 20); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			out := filepath.Join(dir, "output")
			stdout, stderr, code := run(t, "-C", dir, "--cache", t.TempDir(), "build", "master")
			if tc.want == "" {
				if code != 0 {
					t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
				}
				return
			}
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want 2 and %q\nstdout: %s\nstderr: %s", code, tc.want, stdout, stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the output dir was created: %v", err)
			}
		})
	}
}

// A symlink at OUT/.ROLE.lock is refused, not followed (issue 9, item 10):
// the build fails and creates nothing where it points.
func TestBuildLockNotFollowed(t *testing.T) {
	requireTool(t, "mke2fs")
	lab, outside := t.TempDir(), t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":            "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": "base: {tar: rootfs.tar}\ndisk: {size: 300MiB, boot: []}\n",
		"output/.master.lock": "->" + filepath.Join(outside, "created"),
	})
	writeTarFile(t, filepath.Join(lab, "rootfs.tar"), map[string]string{"etc/hostname": "m\n"})
	stdout, stderr, code := run(t, "-C", lab, "--cache", t.TempDir(), "build", "master")
	if code == 0 || !strings.Contains(stderr, "lock files are never followed") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if _, err := os.Lstat(filepath.Join(outside, "created")); !os.IsNotExist(err) {
		t.Errorf("the lock's symlink was followed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(lab, "output", "master.qcow2")); !os.IsNotExist(err) {
		t.Errorf("an image was written: %v", err)
	}
}

// build --all --jobs N bakes the roles at once: the same bytes as one at a
// time, from the same cache.
func TestBuildJobsSameBytes(t *testing.T) {
	requireTool(t, "mke2fs")
	lab := t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":            "name: t\nnodes:\n  - {name: m, role: master, ip: 172.18.0.2}\n  - {name: w, role: worker, ip: 172.18.0.3}\n  - {name: s, role: spare, ip: 172.18.0.4}\n",
		"recipes/master.yaml": "base: {tar: base.tar}\nfiles: [{path: /etc/role, content: master}]\ndisk: {size: 300MiB, boot: []}\n",
		"recipes/worker.yaml": "base: {tar: base.tar}\nfiles: [{path: /etc/role, content: worker}]\ndisk: {size: 300MiB, boot: []}\n",
		"recipes/spare.yaml":  "base: {tar: base.tar}\ndisk: {size: 260MiB, boot: []}\n",
	})
	writeTarFile(t, filepath.Join(lab, "base.tar"), map[string]string{
		"etc/hostname":     "base\n",
		"usr/share/x/data": strings.Repeat("labbake", 200<<10),
	})
	cache := t.TempDir()
	outs := map[string]string{}
	for _, jobs := range []string{"1", "3"} {
		outs[jobs] = t.TempDir()
		if stdout, stderr, code := run(t, "-C", lab, "--cache", cache, "--out", outs[jobs], "build", "--all", "--jobs", jobs); code != 0 {
			t.Fatalf("build --all --jobs %s: exit %d\n%s%s", jobs, code, stdout, stderr)
		}
	}
	for _, role := range []string{"master", "worker", "spare"} {
		for _, ext := range []string{".qcow2", ".manifest.json", ".spdx.json"} {
			a, err1 := os.ReadFile(filepath.Join(outs["1"], role+ext))
			b, err2 := os.ReadFile(filepath.Join(outs["3"], role+ext))
			if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
				t.Errorf("%s%s differs between --jobs 1 and --jobs 3 (%v, %v)", role, ext, err1, err2)
			}
		}
	}
	a, _ := os.ReadFile(filepath.Join(outs["1"], "SHA256SUMS"))
	b, _ := os.ReadFile(filepath.Join(outs["3"], "SHA256SUMS"))
	if !bytes.Equal(a, b) || strings.Count(string(a), "\n") != 9 {
		t.Errorf("SHA256SUMS: --jobs 1\n%s--jobs 3\n%s", a, b)
	}
}

// --compress alone writes zlib clusters, --compress=zstd zstd ones; the
// manifest says which, and the image's header too.
func TestBuildCompress(t *testing.T) {
	requireTool(t, "mke2fs")
	lab := t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":            "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": "base: {tar: rootfs.tar}\ndisk: {size: 300MiB, boot: []}\n",
	})
	writeTarFile(t, filepath.Join(lab, "rootfs.tar"), map[string]string{
		"etc/hostname":    "m\n",
		"usr/share/words": strings.Repeat("the quick brown fox jumps over the lazy dog\n", 20000),
	})
	sizes := map[string]int64{}
	for _, tc := range []struct {
		flags      []string
		compressed bool
		want       string            // output.compression
		ctype      qcow2.Compression // of the header
	}{
		{nil, false, "", qcow2.Zlib},
		{[]string{"--compress"}, true, "zlib", qcow2.Zlib},
		{[]string{"--compress=zlib"}, true, "zlib", qcow2.Zlib},
		{[]string{"--compress=deflate"}, true, "zlib", qcow2.Zlib},
		{[]string{"--compress=zstd"}, true, "zstd", qcow2.Zstd},
		{[]string{"--compress=none"}, false, "", qcow2.Zlib},
	} {
		t.Run(strings.Join(append([]string{"build"}, tc.flags...), " "), func(t *testing.T) {
			out := t.TempDir()
			args := append([]string{"-C", lab, "--cache", t.TempDir(), "--out", out, "build"}, tc.flags...)
			stdout, stderr, code := run(t, append(args, "master")...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			var m struct {
				Output struct {
					Size        int64   `json:"size"`
					Compressed  bool    `json:"compressed"`
					Compression *string `json:"compression"`
				} `json:"output"`
			}
			b, err := os.ReadFile(filepath.Join(out, "master.manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			got := ""
			if m.Output.Compression != nil {
				got = *m.Output.Compression
				if got == "" {
					t.Errorf("output.compression is an empty string")
				}
			}
			if m.Output.Compressed != tc.compressed || got != tc.want {
				t.Errorf("manifest output: compressed %v, compression %q; want %v, %q", m.Output.Compressed, got, tc.compressed, tc.want)
			}
			f, err := os.Open(filepath.Join(out, "master.qcow2"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			im, err := qcow2.Open(f, m.Output.Size)
			if err != nil {
				t.Fatal(err)
			}
			if im.CompressionType() != tc.ctype {
				t.Errorf("image compression type %v, want %v", im.CompressionType(), tc.ctype)
			}
			sizes[strings.Join(tc.flags, " ")] = m.Output.Size
		})
	}
	t.Logf("image sizes: %v", sizes)
	if sizes["--compress=zstd"] >= sizes[""] || sizes["--compress"] >= sizes[""] {
		t.Errorf("compressed images not smaller: %v", sizes)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"build", "--compress=lz4", "master"}, "--compress=lz4: want zlib"},
		{[]string{"build", "master", "--compress", "zstd"}, `"zstd" is taken for a role: write --compress=zstd`},
		{[]string{"build", "--all", "--compress", "zlib"}, `"zlib" is taken for a role: write --compress=zlib`},
	} {
		stdout, stderr, code := run(t, append([]string{"-C", lab, "--cache", t.TempDir(), "--out", t.TempDir()}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q\nstdout: %s\nstderr: %s", tc.args, code, tc.want, stdout, stderr)
		}
	}
}

// TestBuildEditRevertSameAsCold edits a unit, an overlay file and an
// inline file, rebuilds, reverts, rebuilds: each rebuild reuses the lower
// root kept by the stage cache and gives the same bytes as a cold build of
// the same lab with the stage cache off (and one with it on, empty); a
// damaged cache entry is noticed, dropped and made again.
func TestBuildEditRevertSameAsCold(t *testing.T) {
	requireTool(t, "mke2fs")
	lab := t.TempDir()
	recipe := func(file string) string {
		return "base: {tar: base.tar}\noverlays: [master]\ndisk: {size: 300MiB, boot: []}\n" +
			"units: [{name: lab.service}]\n" +
			"files:\n  - {path: /etc/lab.conf, content: \"" + file + "\\n\", mode: \"0600\"}\n"
	}
	unit := func(cmd string) string { return "[Service]\nExecStart=/bin/" + cmd + "\n" }
	writeFiles(t, lab, map[string]string{
		"lab.yaml":                    "name: t\nnodes:\n  - {name: m, role: master, ip: 172.18.0.2}\n",
		"recipes/master.yaml":         recipe("a=1"),
		"units/lab.service":           unit("true"),
		"overlays/master/etc/motd":    "before\n",
		"overlays/master/etc/keep.md": strings.Repeat("unchanged ", 1000),
	})
	writeTarFile(t, filepath.Join(lab, "base.tar"), map[string]string{
		"etc/hostname":     "base\n",
		"usr/share/x/data": strings.Repeat("labbake", 100<<10),
	})
	motd := filepath.Join(lab, "overlays/master/etc/motd")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := func(cache, out string, flags ...string) ([]byte, string) {
		t.Helper()
		args := append([]string{"-C", lab, "-v", "--cache", cache, "--out", out, "build", "master"}, flags...)
		stdout, stderr, code := run(t, args...)
		if code != 0 {
			t.Fatalf("build: exit %d\n%s%s", code, stdout, stderr)
		}
		b, err := os.ReadFile(filepath.Join(out, "master.qcow2"))
		if err != nil {
			t.Fatal(err)
		}
		return b, stderr
	}
	cold := func() []byte {
		t.Helper()
		off, _ := build(t.TempDir(), t.TempDir(), "--stage-cache=false")
		on, _ := build(t.TempDir(), t.TempDir())
		if !bytes.Equal(off, on) {
			t.Fatal("cold builds with the stage cache off and on differ")
		}
		return off
	}
	cache, out := t.TempDir(), t.TempDir()
	before, log := build(cache, out)
	if strings.Contains(log, "too little free space") {
		t.Skipf("the stage cache keeps nothing on this disk: %s", log)
	}
	if !strings.Contains(log, "hit=false") {
		t.Errorf("first build: no root cache miss in its log:\n%s", log)
	}
	edits := []struct {
		name string
		edit func()
	}{
		{"unit", func() { write(filepath.Join(lab, "units/lab.service"), unit("false")) }},
		{"overlay file", func() { write(motd, "after an edit\n") }},
		{"inline file", func() { write(filepath.Join(lab, "recipes/master.yaml"), recipe("a=2")) }},
	}
	if strings.Contains(log, "tree snapshot") {
		t.Errorf("first build: a tree snapshot read or kept (the first sighting only marks it):\n%s", log)
	}
	prev := before
	for i, e := range edits {
		e.edit()
		edited, log := build(cache, out)
		if !strings.Contains(log, "hit=true") {
			t.Errorf("%s edited: the rebuild did not reuse the lower root:\n%s", e.name, log)
		}
		// The second build keeps the base's tree, the next ones read it.
		if want := []string{"tree snapshot kept", "tree snapshot: base and layers read"}[min(i, 1)]; !strings.Contains(log, want) {
			t.Errorf("%s edited: no %q in the log:\n%s", e.name, want, log)
		}
		// From the third build the base's contents are known clean of keys.
		if i > 0 && (!strings.Contains(log, "known_clean=") || strings.Contains(log, "known_clean=0")) {
			t.Errorf("%s edited: the secret scan read the snapshot's contents again:\n%s", e.name, log)
		}
		if bytes.Equal(prev, edited) {
			t.Fatalf("%s edited: the image did not change", e.name)
		}
		if !bytes.Equal(edited, cold()) {
			t.Errorf("%s edited: the rebuild differs from a cold build of the edited lab", e.name)
		}
		prev = edited
	}
	write(filepath.Join(lab, "recipes/master.yaml"), recipe("a=1"))
	write(filepath.Join(lab, "units/lab.service"), unit("true"))
	write(motd, "before\n")
	reverted, _ := build(cache, out)
	if !bytes.Equal(reverted, before) || !bytes.Equal(reverted, cold()) {
		t.Error("the rebuild after the revert differs from a cold build (or from the first build)")
	}

	// The base tarball rewritten: its snapshot is not used (the file is
	// not the same one), the image takes the new content, then reverted.
	base := filepath.Join(lab, "base.tar")
	for _, content := range []string{"edited base\n", "base\n"} {
		writeTarFile(t, base, map[string]string{
			"etc/hostname":     content,
			"usr/share/x/data": strings.Repeat("labbake", 100<<10),
		})
		got, log := build(cache, out)
		if strings.Contains(log, "tree snapshot: base and layers read") {
			t.Errorf("base.tar rewritten (%q): its old snapshot was read:\n%s", content, log)
		}
		if !bytes.Equal(got, cold()) {
			t.Errorf("base.tar rewritten (%q): the rebuild differs from a cold build", content)
		}
	}

	// A damaged entry: one byte of the kept file system changed.
	roots, _ := filepath.Glob(filepath.Join(cache, "stage", "*", "*.ext4"))
	if len(roots) != 1 {
		t.Fatalf("stage cache holds %v, want one root", roots)
	}
	f, err := os.OpenFile(roots[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0x5a}, 4096*3+17); err != nil {
		t.Fatal(err)
	}
	f.Close()
	again, log := build(cache, out)
	if !strings.Contains(log, "did not match its digest") || !strings.Contains(log, "hit=false") {
		t.Errorf("a damaged cache entry was not reported and dropped:\n%s", log)
	}
	if !bytes.Equal(again, before) {
		t.Error("the build after a damaged cache entry differs from the first build")
	}
	if _, log := build(cache, out); !strings.Contains(log, "hit=true") {
		t.Errorf("the root was not kept again after the damaged entry:\n%s", log)
	}
}

// TestBuildReusesImageBlocks: with OUT on a file system that shares
// extents, a rebuild after an edit clones what the new image has in
// common with the one it replaces and says how much; the image is the
// same as a cold build's. An image touched since (as by booting it) is
// not taken from.
func TestBuildReusesImageBlocks(t *testing.T) {
	requireTool(t, "mke2fs")
	out := testfs.Reflink(t, 1<<30)
	lab := t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":                 "name: t\nnodes:\n  - {name: m, role: master, ip: 172.18.0.2}\n",
		"recipes/master.yaml":      "base: {tar: base.tar}\noverlays: [master]\ndisk: {size: 300MiB, boot: []}\n",
		"overlays/master/etc/motd": "before\n",
	})
	writeTarFile(t, filepath.Join(lab, "base.tar"), map[string]string{
		"usr/share/x/data": strings.Repeat("labbake reuse ", 300<<10),
	})
	cache := t.TempDir()
	build := func(cache, out string, flags ...string) ([]byte, string) {
		t.Helper()
		stdout, stderr, code := run(t, append([]string{"-C", lab, "-v", "--cache", cache, "--out", out, "build", "master"}, flags...)...)
		if code != 0 {
			t.Fatalf("build: exit %d\n%s%s", code, stdout, stderr)
		}
		b, err := os.ReadFile(filepath.Join(out, "master.qcow2"))
		if err != nil {
			t.Fatal(err)
		}
		return b, stderr
	}
	reused := func(log string) int64 {
		m := regexp.MustCompile(`msg="qcow2 converted".* reused=(\d+)`).FindStringSubmatch(log)
		if m == nil {
			t.Fatalf("no qcow2 line in the log:\n%s", log)
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}
	if _, log := build(cache, out); reused(log) != 0 {
		t.Errorf("first build reused %d bytes", reused(log))
	}
	motd := filepath.Join(lab, "overlays/master/etc/motd")
	for i, step := range []string{"edit", "touched image"} {
		if err := os.WriteFile(motd, []byte(step+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if step == "touched image" {
			now := time.Now().Add(time.Minute)
			if err := os.Chtimes(filepath.Join(out, "master.qcow2"), now, now); err != nil {
				t.Fatal(err)
			}
		}
		got, log := build(cache, out)
		cold, _ := build(t.TempDir(), t.TempDir(), "--stage-cache=false")
		if !bytes.Equal(got, cold) {
			t.Errorf("%s: the image differs from a cold build's", step)
		}
		if n := reused(log); (i == 0) != (n > int64(len(got))/2) {
			t.Errorf("%s: reused %d of %d bytes", step, n, len(got))
		}
	}
}
