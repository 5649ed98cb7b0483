package debian

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/iox"
)

const testEpoch = 1700000000

// writeScript writes an executable shell script and returns its path.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeMmdebstrap is a stand-in that records its runs and environment in
// dir and writes a small fake tarball to its output argument after sleeping
// for the given time.
func fakeMmdebstrap(t *testing.T, dir string, sleep string) string {
	t.Helper()
	return writeScript(t, dir, "fake-mmdebstrap", fmt.Sprintf(`set -eu
echo run >> %[1]q/runs
while [ $# -gt 0 ]; do if [ "$1" = "--" ]; then shift; break; fi; shift; done
suite=$1 out=$2
printf 'SOURCE_DATE_EPOCH=%%s\nTMPDIR=%%s\nout=%%s\n' "$SOURCE_DATE_EPOCH" "$TMPDIR" "$out" > %[1]q/env
[ -d "$TMPDIR" ] || { echo "E: no TMPDIR" >&2; exit 9; }
sleep %[2]s
printf 'fake base %%s %%s\n' "$suite" "$SOURCE_DATE_EPOCH" > "$out"
echo "I: done" >&2
`, dir, sleep))
}

func failingMmdebstrap(t *testing.T, dir string) string {
	return writeScript(t, dir, "failing-mmdebstrap", "echo 'must not run' >&2\nexit 1\n")
}

func runs(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "runs"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		t.Errorf("%s is not empty: %q", dir, names)
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestBuildFake(t *testing.T) {
	scripts, tmp := t.TempDir(), t.TempDir()
	store := newDirStore(t)
	var progress bytes.Buffer
	b := &Builder{Mmdebstrap: fakeMmdebstrap(t, scripts, "0"), TempDir: tmp, Progress: &progress}
	spec := Spec{Suite: "bookworm", Packages: []string{"less"}}
	ctx := context.Background()

	d, err := b.Build(ctx, store, spec, testEpoch, false)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if want := sha("fake base bookworm 1700000000\n"); d != want {
		t.Errorf("digest = %s, want %s", d, want)
	}
	if n := runs(t, scripts); n != 1 {
		t.Errorf("mmdebstrap ran %d times, want 1", n)
	}
	if ref, ok, _ := store.Ref(spec.Key(testEpoch)); !ok || ref != d {
		t.Errorf("ref %s = %q, %v; want %s", spec.Key(testEpoch), ref, ok, d)
	}
	env, err := os.ReadFile(filepath.Join(scripts, "env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SOURCE_DATE_EPOCH=1700000000\n", "TMPDIR=" + tmp + "/labbake-debian-", "out=" + tmp + "/labbake-debian-"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("mmdebstrap's environment lacks %q:\n%s", want, env)
		}
	}
	if !strings.Contains(progress.String(), "I: done\n") {
		t.Errorf("progress lacks mmdebstrap's output: %q", progress.String())
	}
	assertEmptyDir(t, tmp)

	// Cached: a Builder whose mmdebstrap would fail returns the same digest,
	// online or offline, with the packages in another order.
	cachedB := &Builder{Mmdebstrap: failingMmdebstrap(t, scripts), TempDir: tmp}
	for _, offline := range []bool{false, true} {
		d2, err := cachedB.Build(ctx, store, Spec{Suite: "bookworm", Packages: []string{"less", "less"}}, testEpoch, offline)
		if err != nil || d2 != d {
			t.Errorf("cached Build(offline=%v) = %s, %v; want %s", offline, d2, err, d)
		}
	}

	// A ref whose blob went missing is rebuilt.
	p, _ := store.blobPath(d)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if d3, err := b.Build(ctx, store, spec, testEpoch, false); err != nil || d3 != d {
		t.Errorf("Build after losing the blob = %s, %v; want %s", d3, err, d)
	}
	if n := runs(t, scripts); n != 2 {
		t.Errorf("mmdebstrap ran %d times, want 2", n)
	}
	assertEmptyDir(t, tmp)
}

func TestBuildOffline(t *testing.T) {
	scripts, tmp := t.TempDir(), t.TempDir()
	store := newDirStore(t)
	b := &Builder{Mmdebstrap: fakeMmdebstrap(t, scripts, "0"), TempDir: tmp}
	_, err := b.Build(context.Background(), store, Spec{Suite: "bookworm"}, testEpoch, true)
	if !errors.Is(err, iox.ErrOffline) {
		t.Fatalf("Build offline = %v, want iox.ErrOffline", err)
	}
	for _, want := range []string{"debian: ", "bookworm", "labbake fetch", "import a bundle"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if n := runs(t, scripts); n != 0 {
		t.Errorf("mmdebstrap ran %d times offline", n)
	}
	assertEmptyDir(t, tmp)
}

func TestBuildFailure(t *testing.T) {
	scripts, tmp := t.TempDir(), t.TempDir()
	store := newDirStore(t)
	prog := writeScript(t, scripts, "mm", `i=1
while [ $i -le 100 ]; do echo "line $i" >&2; i=$((i+1)); done
printf 'no newline at the end' >&2
exit 3
`)
	b := &Builder{Mmdebstrap: prog, TempDir: tmp}
	_, err := b.Build(context.Background(), store, Spec{Suite: "bookworm"}, testEpoch, false)
	if err == nil {
		t.Fatal("Build succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"debian: ", "exit status 3", "line 62\n", "line 100\n", "no newline at the end"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "line 61\n") {
		t.Errorf("error keeps more than %d lines:\n%s", tailLines, msg)
	}
	if refs := store.refs(t); len(refs) != 0 {
		t.Errorf("failed build left refs %q", refs)
	}
	assertEmptyDir(t, tmp)
}

func TestBuildNoTarball(t *testing.T) {
	tmp := t.TempDir()
	b := &Builder{Mmdebstrap: writeScript(t, t.TempDir(), "mm", "exit 0\n"), TempDir: tmp}
	_, err := b.Build(context.Background(), newDirStore(t), Spec{Suite: "bookworm"}, testEpoch, false)
	if err == nil || !strings.Contains(err.Error(), "made no tarball") {
		t.Errorf("Build = %v, want a missing-tarball error", err)
	}
	assertEmptyDir(t, tmp)
}

func TestBuildMissingProgram(t *testing.T) {
	b := &Builder{Mmdebstrap: filepath.Join(t.TempDir(), "no-such-mmdebstrap"), TempDir: t.TempDir()}
	_, err := b.Build(context.Background(), newDirStore(t), Spec{Suite: "bookworm"}, testEpoch, false)
	if err == nil || !strings.Contains(err.Error(), "install the mmdebstrap package") {
		t.Errorf("Build = %v, want a missing-mmdebstrap error", err)
	}
}

func TestBuildInvalidSpec(t *testing.T) {
	scripts := t.TempDir()
	b := &Builder{Mmdebstrap: fakeMmdebstrap(t, scripts, "0"), TempDir: t.TempDir()}
	_, err := b.Build(context.Background(), newDirStore(t), Spec{Variant: "nope"}, testEpoch, false)
	if err == nil || !strings.Contains(err.Error(), "suite: required") || !strings.Contains(err.Error(), "variant: unknown variant") {
		t.Errorf("Build = %v, want both spec problems", err)
	}
	if n := runs(t, scripts); n != 0 {
		t.Errorf("mmdebstrap ran for an invalid spec")
	}
}

func TestBuildConcurrentFake(t *testing.T) {
	scripts, tmp := t.TempDir(), t.TempDir()
	store := newDirStore(t)
	prog := fakeMmdebstrap(t, scripts, "1")
	spec := Spec{Suite: "bookworm", Packages: []string{"less"}}
	const n = 4
	digests := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b := &Builder{Mmdebstrap: prog, TempDir: tmp}
			digests[i], errs[i] = b.Build(context.Background(), store, spec, testEpoch, false)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || digests[i] != digests[0] {
			t.Errorf("Build %d = %s, %v; want %s", i, digests[i], errs[i], digests[0])
		}
	}
	if got := runs(t, scripts); got != 1 {
		t.Errorf("mmdebstrap ran %d times for %d concurrent builds, want 1", got, n)
	}
	assertEmptyDir(t, tmp)
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after "(comm)".
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
}

func groupAlive(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && alive(pid) {
			return true
		}
	}
	return false
}

func waitFile(t *testing.T, p string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not appear within %v", p, d)
	return ""
}

func TestBuildCancelFake(t *testing.T) {
	for _, tc := range []struct {
		name, trap string
	}{
		{"honours SIGTERM", ""},
		{"ignores SIGTERM", "trap '' TERM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scripts, tmp := t.TempDir(), t.TempDir()
			pids := filepath.Join(scripts, "pids")
			// The children write into TMPDIR as mmdebstrap would.
			prog := writeScript(t, scripts, "mm", fmt.Sprintf(`%s
echo data > "$TMPDIR/chroot-file"
sleep 300 & a=$!
sleep 300 & b=$!
echo "$$ $a $b" > %q
wait
`, tc.trap, pids))
			b := &Builder{Mmdebstrap: prog, TempDir: tmp, KillGrace: 300 * time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				d   string
				err error
			}
			done := make(chan result, 1)
			go func() {
				d, err := b.Build(ctx, newDirStore(t), Spec{Suite: "bookworm"}, testEpoch, false)
				done <- result{d, err}
			}()
			fields := strings.Fields(waitFile(t, pids, 10*time.Second))
			cancel()
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Build did not return after cancel")
			}
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("Build = %q, %v; want context.Canceled", r.d, r.err)
			}
			pgid, _ := strconv.Atoi(fields[0])
			for _, f := range fields {
				pid, _ := strconv.Atoi(f)
				if alive(pid) {
					t.Errorf("process %d survived the cancel", pid)
				}
			}
			if groupAlive(pgid) {
				t.Errorf("process group %d survived the cancel", pgid)
			}
			assertEmptyDir(t, tmp)
		})
	}
}

func TestBuildCancelledBeforeStart(t *testing.T) {
	scripts := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := &Builder{Mmdebstrap: fakeMmdebstrap(t, scripts, "0"), TempDir: t.TempDir()}
	if _, err := b.Build(ctx, newDirStore(t), Spec{Suite: "bookworm"}, testEpoch, false); !errors.Is(err, context.Canceled) {
		t.Errorf("Build = %v, want context.Canceled", err)
	}
	if runs(t, scripts) != 0 {
		t.Errorf("mmdebstrap ran with a cancelled context")
	}
}

// TestBuildMountsPrivate plays a root-mode mmdebstrap that mounts in its
// TMPDIR (a bind mount of an outside directory and a tmpfs) and never
// unmounts: its mounts live in a mount namespace of its own, so the host
// never sees them, and they go when it does, even if labbake is killed
// first. Cancelled, Build leaves nothing behind and touches nothing
// outside.
func TestBuildMountsPrivate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	scripts, tmp, outside := t.TempDir(), t.TempDir(), t.TempDir()
	sentinel := filepath.Join(outside, "host-file")
	if err := os.WriteFile(sentinel, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(scripts, "ready")
	prog := writeScript(t, scripts, "mm", fmt.Sprintf(`trap '' TERM
mkdir -p "$TMPDIR/root/dev" "$TMPDIR/root/run"
mount --bind %q "$TMPDIR/root/dev" || exit 7
mount -t tmpfs none "$TMPDIR/root/run" || exit 7
grep -c " $TMPDIR/root/" /proc/self/mountinfo > %q
sleep 300
`, outside, ready))
	b := &Builder{Mmdebstrap: prog, TempDir: tmp, KillGrace: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.Build(ctx, newDirStore(t), Spec{Suite: "bookworm"}, testEpoch, false)
		done <- err
	}()
	waitFile(t, ready, 10*time.Second)
	if n, _ := os.ReadFile(ready); strings.TrimSpace(string(n)) != "2" {
		t.Fatalf("the stand-in sees %q mounts of its own, want 2", n)
	}
	if m, _ := mountsUnder(tmp); len(m) > 0 {
		t.Errorf("mmdebstrap's mounts are seen from the host: %q", m)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Build = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Build did not return after cancel")
	}
	if b, err := os.ReadFile(sentinel); err != nil || string(b) != "keep me" {
		t.Fatalf("a file outside the temporary directory was touched: %q, %v", b, err)
	}
	if m, _ := mountsUnder(tmp); len(m) > 0 {
		t.Errorf("mounts left behind: %q", m)
	}
	assertEmptyDir(t, tmp)
}

// TestRemoveWorkDetaches: mounts left below a work dir (by an mmdebstrap
// outside a namespace of its own) are detached before anything is
// removed, and nothing is deleted through them.
func TestRemoveWorkDetaches(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	work, outside := t.TempDir(), t.TempDir()
	sentinel := filepath.Join(outside, "host-file")
	if err := os.WriteFile(sentinel, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev, run := filepath.Join(work, "root/dev"), filepath.Join(work, "root/run")
	for _, c := range [][]string{{"mkdir", "-p", dev, run}, {"mount", "--bind", outside, dev}, {"mount", "-t", "tmpfs", "none", run}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Skipf("%v: %v %s", c, err, out)
		}
	}
	if err := removeWork(work); err != nil {
		t.Fatal(err)
	}
	if m, _ := mountsUnder(work); len(m) > 0 {
		t.Errorf("mounts left behind: %q", m)
	}
	if _, err := os.Stat(work); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir still there: %v", err)
	}
	if b, err := os.ReadFile(sentinel); err != nil || string(b) != "keep me" {
		t.Fatalf("a file behind a mount was touched: %q, %v", b, err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:         "/plain",
		`/a\040b`:        "/a b",
		`/tab\011x\134y`: "/tab\tx\\y",
		`/trailing\04`:   `/trailing\04`,
		`/not\999octal`:  `/not\999octal`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
