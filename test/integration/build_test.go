// Package integration bakes whole images through the CLI and checks them
// with the tools users trust: qemu-img, sgdisk, e2fsck and debugfs.
package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/checks"
	"github.com/labbake/labbake/internal/cli"
)

// want is what one path of the baked image must be.
type want struct {
	mode    uint32 // with type bits
	uid     int
	gid     int
	content string // regular files
	target  string // symlinks
	mtime   int64  // 0: the lab's epoch
	xattrs  map[string]string
	major   int
	minor   int
	links   int
}

const (
	epoch     = 1700000000 // the test lab's epoch (lab.yaml)
	mtime2001 = 990000000  // 2001-05-16
)

var capability = []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// netBindService is security.capability as `setcap
// cap_net_bind_service=+ep FILE` writes it (libcap2-bin 2.66, read back
// with getfattr -n security.capability -e hex FILE): what an artifact with
// capabilities: [CAP_NET_BIND_SERVICE] must get.
var netBindService = []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// makeLab writes a lab dir with a generated tar base, a layer, a unit, inline
// files, an overlay and an artifact with a capability, and returns it with
// what the image must hold.
func makeLab(t *testing.T) (string, map[string]want) {
	t.Helper()
	dir := t.TempDir()
	w := map[string]want{}
	dirw := func(p string, mode uint32) { w[p] = want{mode: 0o040000 | mode} }
	fileHdr := func(name string, mode int64, content string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)), ModTime: time.Unix(epoch-100, 0), Format: tar.FormatPAX}
	}
	var base []tarEntry
	mtimes := map[string]int64{}
	add := func(h *tar.Header, content string) {
		base = append(base, tarEntry{h, content})
		mtimes[strings.TrimSuffix(h.Name, "/")] = h.ModTime.Unix()
	}
	for _, d := range []string{"etc", "usr", "usr/bin", "dev", "run", "home", "home/user", "big", "var"} {
		add(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: time.Unix(epoch-100, 0)}, "")
		dirw(d, 0o755)
	}
	add(fileHdr("etc/hello", 0o644, "hello\n"), "hello\n")
	w["etc/hello"] = want{mode: 0o100644, content: "hello\n"}
	add(fileHdr("usr/bin/tool", 0o755, "#!/bin/sh\necho tool\n"), "#!/bin/sh\necho tool\n")
	w["usr/bin/tool"] = want{mode: 0o100755, content: "#!/bin/sh\necho tool\n"}
	for i := range 2000 {
		c := fmt.Sprintf("file %d\n", i)
		add(fileHdr(fmt.Sprintf("big/f%04d", i), 0o644, c), c)
		w[fmt.Sprintf("big/f%04d", i)] = want{mode: 0o100644, content: c}
	}
	add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "usr/bin/link", Linkname: "tool", Mode: 0o777, ModTime: time.Unix(epoch-100, 0)}, "")
	w["usr/bin/link"] = want{mode: 0o120777, target: "tool"}
	long := "/" + strings.Repeat("long-target/", 8) + "end"
	add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/long", Linkname: long, Mode: 0o777, ModTime: time.Unix(epoch-100, 0)}, "")
	w["etc/long"] = want{mode: 0o120777, target: long}
	add(fileHdr("usr/bin/a", 0o755, "same inode\n"), "same inode\n")
	add(&tar.Header{Typeflag: tar.TypeLink, Name: "usr/bin/b", Linkname: "usr/bin/a", ModTime: time.Unix(epoch-100, 0)}, "")
	// A link that sorts before its target, as GNU tar writes some.
	add(fileHdr("etc/zz-target", 0o644, "linked\n"), "linked\n")
	add(&tar.Header{Typeflag: tar.TypeLink, Name: "etc/aa-link", Linkname: "etc/zz-target", ModTime: time.Unix(epoch-100, 0)}, "")
	w["etc/zz-target"] = want{mode: 0o100644, content: "linked\n", links: 2}
	w["etc/aa-link"] = want{mode: 0o100644, content: "linked\n", links: 2}
	w["usr/bin/a"] = want{mode: 0o100755, content: "same inode\n", links: 2}
	w["usr/bin/b"] = want{mode: 0o100755, content: "same inode\n", links: 2}
	add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: time.Unix(epoch-100, 0)}, "")
	w["dev/null"] = want{mode: 0o020666, major: 1, minor: 3}
	add(&tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600, ModTime: time.Unix(epoch-100, 0)}, "")
	w["run/fifo"] = want{mode: 0o010600}
	add(fileHdr("usr/bin/su", 0o4755, "su\n"), "su\n")
	w["usr/bin/su"] = want{mode: 0o104755, content: "su\n"}
	h := fileHdr("home/user/file", 0o640, "mine\n")
	h.Uid, h.Gid = 1234, 5678
	add(h, "mine\n")
	w["home/user/file"] = want{mode: 0o100640, uid: 1234, gid: 5678, content: "mine\n"}
	h = fileHdr("usr/bin/ping", 0o755, "ping\n")
	h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(capability)}
	add(h, "ping\n")
	w["usr/bin/ping"] = want{mode: 0o100755, content: "ping\n", xattrs: map[string]string{"security.capability": hexBytes(capability)}}
	h = fileHdr("etc/old", 0o644, "old\n")
	h.ModTime = time.Unix(mtime2001, 0)
	add(h, "old\n")
	w["etc/old"] = want{mode: 0o100644, content: "old\n", mtime: mtime2001}
	add(fileHdr("var/gone", 0o644, "removed by the layer\n"), "removed by the layer\n")
	writeTar(t, filepath.Join(dir, "base.tar"), base)

	// A layer: a whiteout and a new file.
	writeTar(t, filepath.Join(dir, "layer.tar"), []tarEntry{
		{&tar.Header{Typeflag: tar.TypeReg, Name: "var/.wh.gone", Mode: 0o644, ModTime: time.Unix(epoch-100, 0)}, ""},
		{fileHdr("var/added", 0o644, "from the layer\n"), "from the layer\n"},
	})
	w["var/added"] = want{mode: 0o100644, content: "from the layer\n", mtime: epoch - 100}
	for p, mt := range mtimes {
		if x, ok := w[p]; ok {
			x.mtime = mt
			w[p] = x
		}
	}

	mkfile(t, dir, "lab.yaml", `name: itest
epoch: 1700000000
vars: {greeting: hi}
nodes:
  - {name: master, role: master, ip: 172.18.0.10}
`)
	mkfile(t, dir, "recipes/common.yaml", `base: {tar: base.tar}
layers: [{tar: layer.tar}]
disk: {size: 300MiB, boot: []}
`)
	mkfile(t, dir, "recipes/master.yaml", `extends: common
files:
  - {path: /etc/motd, content: "{{ .vars.greeting }} from {{ .role }}\n", mode: "0600", owner: "1:2"}
  - {path: /etc/localtime, symlink: /usr/share/zoneinfo/UTC}
units:
  - {name: hello.service, enable: true}
overlays: [extra]
artifacts:
  - {file: tools/httpd, dest: /usr/local/bin/httpd, capabilities: [net_bind_service]}
`)
	mkfile(t, dir, "tools/httpd", "#!/bin/sh\necho httpd\n")
	dirw("usr/local", 0o755)
	dirw("usr/local/bin", 0o755)
	w["usr/local/bin/httpd"] = want{mode: 0o100755, content: "#!/bin/sh\necho httpd\n", xattrs: map[string]string{"security.capability": hexBytes(netBindService)}}
	mkfile(t, dir, "units/hello.service", "[Unit]\nDescription=hello\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n")
	mkfile(t, dir, "overlays/extra/etc/extra.conf", "extra\n")
	mkfile(t, dir, "overlays/extra/etc/lab.conf.tmpl", "lab={{ .lab.name }}\n")
	w["etc/motd"] = want{mode: 0o100600, uid: 1, gid: 2, content: "hi from master\n"}
	w["etc/localtime"] = want{mode: 0o120777, target: "/usr/share/zoneinfo/UTC"}
	for _, d := range []string{"etc/systemd", "etc/systemd/system", "etc/systemd/system/multi-user.target.wants"} {
		dirw(d, 0o755)
	}
	w["etc/systemd/system/hello.service"] = want{mode: 0o100644, content: "[Unit]\nDescription=hello\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n"}
	w["etc/systemd/system/multi-user.target.wants/hello.service"] = want{mode: 0o120777, target: "/etc/systemd/system/hello.service"}
	w["etc/extra.conf"] = want{mode: 0o100644, content: "extra\n"}
	w["etc/lab.conf"] = want{mode: 0o100644, content: "lab=itest\n"}
	return dir, w
}

type tarEntry struct {
	h       *tar.Header
	content string
}

func writeTar(t *testing.T, path string, entries []tarEntry) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(e.h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.content); err != nil {
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

func mkfile(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func hexBytes(b []byte) string {
	var s strings.Builder
	fmt.Fprintf(&s, "(%d) =", len(b))
	for _, c := range b {
		fmt.Fprintf(&s, " %02x", c)
	}
	return s.String()
}

// labbake runs the CLI in-process and returns stdout, stderr and the exit code.
func labbake(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string { return env[k] }
	err := cli.Run(context.Background(), args, &stdout, &stderr, getenv)
	if err != nil {
		fmt.Fprintln(&stderr, cli.Message(err))
	}
	return stdout.String(), stderr.String(), cli.ExitCode(err)
}

type manifest struct {
	Output struct {
		SHA256      string `json:"sha256"`
		VirtualSize int64  `json:"virtual_size"`
		Size        int64  `json:"size"`
	} `json:"output"`
	Root struct {
		UUID  string `json:"uuid"`
		Files int    `json:"files"`
	} `json:"root"`
	Partitions []struct {
		Name   string `json:"name"`
		Offset int64  `json:"offset"`
		Size   int64  `json:"size"`
	} `json:"partitions"`
	Inputs []struct {
		Kind   string `json:"kind"`
		Digest string `json:"digest"`
	} `json:"inputs"`
	SBOM struct {
		File   string `json:"file"`
		SHA256 string `json:"sha256"`
	} `json:"sbom"`
	Boot struct {
		Methods []string `json:"methods"`
		Kernel  string   `json:"kernel"`
		Linux   string   `json:"linux"`
		Initrd  string   `json:"initrd"`
		Loaders []string `json:"loaders"`
		Cmdline string   `json:"cmdline"`
	} `json:"boot"`
}

func readManifest(t *testing.T, path string) manifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestBuildImage bakes the generated lab and checks the image with qemu-img,
// sgdisk and e2fsck, then reads every path back with debugfs.
func TestBuildImage(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs", "e2fsck", "qemu-img", "sgdisk"} {
		tool(t, name)
	}
	lab, wants := makeLab(t)
	out := filepath.Join(t.TempDir(), "out")
	stdout, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "build", "master", "--keep-raw")
	if code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	image, raw := filepath.Join(out, "master.qcow2"), filepath.Join(out, "master.raw")
	if !strings.Contains(stdout, image) {
		t.Errorf("build did not print what it wrote:\n%s", stdout)
	}
	m := readManifest(t, filepath.Join(out, "master.manifest.json"))
	if got := sha256File(t, image); got != m.Output.SHA256 {
		t.Errorf("manifest sha256 %s, file has %s", m.Output.SHA256, got)
	}
	if m.Output.VirtualSize != 300<<20 {
		t.Errorf("virtual size %d, want %d", m.Output.VirtualSize, 300<<20)
	}
	if len(m.Inputs) != 5 { // base, layer, artifact, unit, overlay
		t.Errorf("manifest inputs: %+v", m.Inputs)
	}
	if m.SBOM.File != "master.spdx.json" || sha256File(t, filepath.Join(out, m.SBOM.File)) != m.SBOM.SHA256 {
		t.Errorf("manifest sbom %+v: not master.spdx.json with its sha256", m.SBOM)
	}
	// SHA256SUMS lists the image, its manifest and SBOM, not the raw disk.
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil || strings.Count(string(sums), "\n") != 3 || !strings.Contains(string(sums), m.Output.SHA256+"  master.qcow2\n") {
		t.Errorf("SHA256SUMS: %v\n%s", err, sums)
	}
	check := exec.Command(tool(t, "sha256sum"), "-c", "--strict", "SHA256SUMS")
	check.Dir = out
	if o, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, o)
	}

	if o, err := runTool(t, "qemu-img", "check", "-f", "qcow2", image); err != nil {
		t.Errorf("qemu-img check: %v\n%s", err, o)
	}
	if o, err := runTool(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, image); err != nil || !strings.Contains(o, "Images are identical") {
		t.Errorf("qemu-img compare: %v\n%s", err, o)
	}
	if o, err := runTool(t, "sgdisk", "-v", raw); err != nil || !strings.Contains(o, "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, o)
	}
	var root int64 = -1
	for _, p := range m.Partitions {
		if p.Name == "root" {
			root = p.Offset
		}
	}
	if root < 0 {
		t.Fatalf("no root partition in manifest: %+v", m.Partitions)
	}
	if o, err := runTool(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", raw, root)); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, o)
	}

	got := readImage(t, raw, root)
	// fstab is generated: check it names the root by UUID with the SSD options.
	fstab := readFiles(t, raw, root, []string{"etc/fstab"})["etc/fstab"]
	if !strings.Contains(string(fstab), "UUID="+m.Root.UUID+"\t/\text4\tdiscard,noatime,") {
		t.Errorf("fstab:\n%s", fstab)
	}
	wants["etc/fstab"] = want{mode: 0o100644, content: string(fstab)}
	// Every image carries the in-guest half of labbake test (builders/checks).
	for p, w := range map[string]want{
		"usr/lib":                               {mode: 0o040755},
		"usr/lib/labbake":                       {mode: 0o040755},
		"usr/lib/labbake/checks":                {mode: 0o100755, content: checks.Script},
		"usr/lib/labbake/checks.list":           {mode: 0o100644, content: string(checks.List(checks.Spec{}))},
		"etc/systemd/system/" + checks.UnitName: {mode: 0o100644, content: checks.Unit},
		"etc/systemd/system/multi-user.target.wants/" + checks.UnitName: {mode: 0o120777, target: "/etc/systemd/system/" + checks.UnitName},
	} {
		if _, ok := wants[p]; !ok {
			wants[p] = w
		}
	}

	var missing, extra []string
	for p := range wants {
		if got[p] == nil {
			missing = append(missing, p)
		}
	}
	for p := range got {
		if _, ok := wants[p]; !ok && p != "lost+found" {
			extra = append(extra, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("image paths differ from the tree: missing %v, extra %v", missing, extra)
	}
	if m.Root.Files != len(wants)+1 { // the root dir itself
		t.Errorf("manifest counts %d files, tree has %d", m.Root.Files, len(wants)+1)
	}

	var regular []string
	for p, w := range wants {
		if w.mode&0o170000 == 0o100000 {
			regular = append(regular, p)
		}
	}
	contents := readFiles(t, raw, root, regular)
	for p, w := range wants {
		g := got[p]
		if g == nil {
			continue
		}
		if g.Mode != w.mode || g.UID != w.uid || g.GID != w.gid {
			t.Errorf("%s: mode %o %d:%d, want %o %d:%d", p, g.Mode, g.UID, g.GID, w.mode, w.uid, w.gid)
		}
		mt := w.mtime
		if mt == 0 {
			mt = epoch
		}
		if g.Mtime != mt {
			t.Errorf("%s: mtime %d, want %d", p, g.Mtime, mt)
		}
		if w.mode&0o170000 == 0o100000 {
			if c := contents[p]; string(c) != w.content || g.Size != int64(len(w.content)) {
				t.Errorf("%s: content %q (size %d), want %q", p, c, g.Size, w.content)
			}
		}
		if g.Target != w.target {
			t.Errorf("%s: link target %q, want %q", p, g.Target, w.target)
		}
		if g.Major != w.major || g.Minor != w.minor {
			t.Errorf("%s: device %d:%d, want %d:%d", p, g.Major, g.Minor, w.major, w.minor)
		}
		if w.links != 0 && g.Links != w.links {
			t.Errorf("%s: %d links, want %d", p, g.Links, w.links)
		}
		if w.links == 0 && w.mode&0o170000 != 0o040000 && g.Links != 1 {
			t.Errorf("%s: %d links, want 1", p, g.Links)
		}
		for k, v := range w.xattrs {
			if g.Xattrs[k] != v {
				t.Errorf("%s: xattr %s = %q, want %q", p, k, g.Xattrs[k], v)
			}
		}
		if len(w.xattrs) == 0 && len(g.Xattrs) != 0 {
			t.Errorf("%s: unexpected xattrs %v", p, g.Xattrs)
		}
	}
	if a, b := got["usr/bin/a"], got["usr/bin/b"]; a != nil && b != nil && a.Ino != b.Ino {
		t.Errorf("hardlink pair has inodes %d and %d", a.Ino, b.Ino)
	}
	// The artifact's capability as debugfs reads it.
	o, err := runTool(t, "debugfs", "-R", "ea_get /usr/local/bin/httpd security.capability", fmt.Sprintf("%s?offset=%d", raw, root))
	if want := "security.capability " + hexBytes(netBindService); err != nil || !strings.Contains(o, want) {
		t.Errorf("debugfs ea_get /usr/local/bin/httpd security.capability: %v, want %q:\n%s", err, want, o)
	}
}
