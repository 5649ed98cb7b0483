package integration

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReproducible builds the same lab twice — different cache and output
// dirs, different wall-clock times — and wants byte-identical images and
// SBOMs, compressed and not.
func TestReproducible(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs"} {
		tool(t, name)
	}
	lab, _ := makeLab(t)
	for _, compress := range []string{"", "--compress", "--compress=zstd"} {
		var sums []string
		for i := range 2 {
			if i == 1 {
				time.Sleep(1100 * time.Millisecond)
			}
			out := t.TempDir()
			args := []string{"-C", lab, "--out", out, "--cache", t.TempDir(), "build", "master"}
			if compress != "" {
				args = append(args, compress)
			}
			if _, stderr, code := labbake(t, nil, args...); code != 0 {
				t.Fatalf("build %v: exit %d\n%s", args, code, stderr)
			}
			sums = append(sums, sha256File(t, filepath.Join(out, "master.qcow2"))+" "+sha256File(t, filepath.Join(out, "master.spdx.json")))
		}
		if sums[0] != sums[1] {
			t.Errorf("%q: two builds differ: %s vs %s", compress, sums[0], sums[1])
		}
	}
}

// TestKilledBuildKeepsPreviousImage kills a rebuild with SIGKILL at several
// points and wants the previous image and manifest untouched each time.
func TestKilledBuildKeepsPreviousImage(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs"} {
		tool(t, name)
	}
	bin := filepath.Join(t.TempDir(), "labbake")
	if out, err := exec.Command("go", "build", "-tags", buildTags, "-o", bin, "../../cmd/labbake").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	lab, _ := makeLab(t)
	out, cache := t.TempDir(), t.TempDir()
	run := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"-C", lab, "--out", out, "--cache", cache}, args...)...)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=")
		return cmd
	}
	if b, err := run("build", "master").CombinedOutput(); err != nil {
		t.Fatalf("first build: %v\n%s", err, b)
	}
	image, man := filepath.Join(out, "master.qcow2"), filepath.Join(out, "master.manifest.json")
	before, manBefore := sha256File(t, image), sha256File(t, man)

	// Change the recipe so a finished rebuild would differ.
	mkfile(t, lab, "units/hello.service", "[Unit]\nDescription=changed\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n")
	midway := 0
	for _, at := range []string{"plan resolved", "tree assembled", "raw disk written", "qcow2 converted"} {
		cmd := run("build", "master", "--compress")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), "msg=\""+at+"\"") || strings.Contains(sc.Text(), "msg=\""+at) {
				seen = true
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
		if !seen {
			t.Fatalf("build never logged %q", at)
		}
		img, m := sha256File(t, image), sha256File(t, man)
		switch {
		case img == before && m == manBefore:
			midway++
		case img != before && readManifest(t, man).Output.SHA256 == img:
			// The kill came after the renames (during clean-up): a
			// complete new image with its manifest is fine; a torn
			// pair is not.
			t.Logf("killed after %q, but the build had already finished", at)
			before, manBefore = img, m
		default:
			t.Errorf("killed after %q: image and manifest torn (image changed %v, manifest changed %v)", at, img != before, m != manBefore)
		}
	}
	// The kill points are early enough that most kills land midway.
	if midway < 3 {
		t.Errorf("only %d of 4 kills landed before the build finished", midway)
	}
	// A later build cleans up after the killed ones and succeeds.
	if b, err := run("build", "master").CombinedOutput(); err != nil {
		t.Fatalf("build after kills: %v\n%s", err, b)
	}
	left, _ := filepath.Glob(filepath.Join(out, ".master.*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	work, _ := os.ReadDir(filepath.Join(cache, "tmp"))
	if len(work) != 0 {
		t.Errorf("work dirs left in the cache: %d", len(work))
	}
}

// TestNonRootBuildIsIdentical builds as root and as an unprivileged user and
// wants the same bytes: owners, devices and xattrs come from the debugfs
// fix-up, not from the host, whoever runs the build.
func TestNonRootBuildIsIdentical(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	for _, name := range []string{"mke2fs", "debugfs"} {
		tool(t, name)
	}
	const nobody = 65534
	top, err := os.MkdirTemp("", "labbake-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(top)
	bin := filepath.Join(top, "labbake")
	if out, err := exec.Command("go", "build", "-tags", buildTags, "-o", bin, "../../cmd/labbake").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	lab, _ := makeLab(t)
	if err := os.CopyFS(filepath.Join(top, "lab"), os.DirFS(lab)); err != nil {
		t.Fatal(err)
	}
	lab = filepath.Join(top, "lab")
	for _, d := range []string{"user", "root"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(top, "user"), nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	for who, uid := range map[string]uint32{"user": nobody, "root": 0} {
		dir := filepath.Join(top, who)
		cmd := exec.Command(bin, "-C", lab, "--out", filepath.Join(dir, "out"), "--cache", filepath.Join(dir, "cache"), "build", "master")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build as %s: %v\n%s", who, err, out)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(top, "user", "out", "master.qcow2"), &st); err != nil || st.Uid != nobody {
		t.Fatalf("the unprivileged build's image is not owned by uid %d (%v)", nobody, err)
	}
	a := sha256File(t, filepath.Join(top, "user", "out", "master.qcow2"))
	b := sha256File(t, filepath.Join(top, "root", "out", "master.qcow2"))
	if a != b {
		t.Errorf("unprivileged build %s differs from root build %s", a, b)
	}
}
