package debian

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/iox"
)

// Integration tests run the real mmdebstrap against the machine's Debian
// mirror: one full minbase build (about half a minute here) and one that is
// cancelled half-way. They are skipped with -short or without mmdebstrap.

// realMmdebstrap returns the path of mmdebstrap or skips the test.
func realMmdebstrap(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs mmdebstrap; skipped with -short")
	}
	p, err := exec.LookPath("mmdebstrap")
	if err != nil {
		t.Skip("mmdebstrap not installed")
	}
	if os.Geteuid() != 0 {
		// --mode=unshare needs subordinate ids.
		u, err := user.Current()
		b, rerr := os.ReadFile("/etc/subuid")
		if err != nil || rerr != nil || !strings.Contains("\n"+string(b), "\n"+u.Username+":") {
			t.Skip("not root and no /etc/subuid entry: mmdebstrap --mode=unshare cannot run")
		}
	}
	return p
}

// integrationSpec is small but has openssh-server, whose installation
// generates host keys that the hooks must remove.
func integrationSpec() Spec {
	return Spec{Suite: "bookworm", Variant: "minbase", Packages: []string{"less", "openssh-server"}}
}

func TestIntegrationBuild(t *testing.T) {
	mm := realMmdebstrap(t)
	scripts, tmp := t.TempDir(), t.TempDir()
	store := newDirStore(t)
	// The wrapper counts runs, then becomes the real mmdebstrap.
	wrapper := writeScript(t, scripts, "mmdebstrap", fmt.Sprintf("echo run >> %q/runs\nexec %q \"$@\"\n", scripts, mm))
	spec := integrationSpec()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Two concurrent builds of one spec: mmdebstrap runs once.
	var wg sync.WaitGroup
	digests, errs := make([]string, 2), make([]error, 2)
	start := time.Now()
	for i := range 2 {
		wg.Go(func() {
			var progress io.Writer
			if testing.Verbose() && i == 0 {
				progress = tLogWriter{t}
			}
			b := &Builder{Mmdebstrap: wrapper, TempDir: tmp, Progress: progress}
			digests[i], errs[i] = b.Build(ctx, store, spec, testEpoch, false)
		})
	}
	wg.Wait()
	t.Logf("mmdebstrap build of %s took %v", spec.Name(), time.Since(start).Round(time.Millisecond))
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("Build %d: %v", i, errs[i])
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("concurrent builds gave %s and %s", digests[0], digests[1])
	}
	if n := runs(t, scripts); n != 1 {
		t.Errorf("mmdebstrap ran %d times for two concurrent builds, want 1", n)
	}
	assertEmptyDir(t, tmp)

	checkBase(t, store, digests[0])

	// From the cache: running mmdebstrap would now fail.
	b := &Builder{Mmdebstrap: failingMmdebstrap(t, scripts), TempDir: tmp}
	if d, err := b.Build(ctx, store, spec, testEpoch, true); err != nil || d != digests[0] {
		t.Errorf("cached Build = %s, %v; want %s", d, err, digests[0])
	}
	// Another epoch is another base: offline it is missing.
	if _, err := b.Build(ctx, store, spec, testEpoch+1, true); !errors.Is(err, iox.ErrOffline) {
		t.Errorf("Build of an uncached epoch offline = %v, want iox.ErrOffline", err)
	}
}

// checkBase reads the tarball digest from store and checks its contents.
func checkBase(t *testing.T, store *dirStore, digest string) {
	t.Helper()
	p, err := store.blobPath(digest)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	seen := map[string]*tar.Header{}
	var hostname []byte
	files := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading base tarball: %v", err)
		}
		files++
		name := "/" + strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
		seen[strings.TrimSuffix(name, "/")] = h
		if h.ModTime.Unix() > testEpoch {
			t.Errorf("%s: mtime %v is after SOURCE_DATE_EPOCH", name, h.ModTime)
		}
		switch {
		case strings.HasPrefix(name, "/etc/ssh/ssh_host_"):
			t.Errorf("base contains SSH host key %s", name)
		case name == "/etc/hostname":
			hostname, _ = io.ReadAll(tr)
		case strings.HasPrefix(name, "/var/lib/apt/lists/") && name != "/var/lib/apt/lists/" &&
			name != "/var/lib/apt/lists/lock" && !strings.HasPrefix(name, "/var/lib/apt/lists/partial/"):
			t.Errorf("apt lists not cleaned: %s", name)
		case strings.HasPrefix(name, "/var/cache/apt/") && (strings.HasSuffix(name, ".deb") || strings.HasSuffix(name, ".bin")):
			t.Errorf("apt cache not cleaned: %s", name)
		}
	}
	t.Logf("base %s: %d entries", digest, files)
	for _, want := range []string{"/usr/bin/less", "/usr/sbin/sshd", "/etc/ssh/sshd_config"} {
		if h, ok := seen[want]; !ok || h.Typeflag != tar.TypeReg {
			t.Errorf("base lacks regular file %s", want)
		}
	}
	if h, ok := seen["/etc/machine-id"]; ok && (h.Typeflag != tar.TypeReg || h.Size != 0) {
		t.Errorf("/etc/machine-id is not an empty file: type %c, %d bytes", h.Typeflag, h.Size)
	}
	if h, ok := seen["/var/lib/dbus/machine-id"]; ok && h.Typeflag != tar.TypeSymlink {
		t.Errorf("/var/lib/dbus/machine-id is present")
	}
	if h, ok := seen["/etc/resolv.conf"]; ok && h.Typeflag != tar.TypeSymlink {
		t.Errorf("the build host's /etc/resolv.conf is in the base")
	}
	if string(hostname) != "localhost\n" {
		t.Errorf("/etc/hostname = %q, want \"localhost\\n\"", hostname)
	}
}

func TestIntegrationCancel(t *testing.T) {
	mm := realMmdebstrap(t)
	scripts, tmp := t.TempDir(), t.TempDir()
	pidFile := filepath.Join(scripts, "pid")
	wrapper := writeScript(t, scripts, "mmdebstrap", fmt.Sprintf("echo $$ > %q\nexec %q \"$@\"\n", pidFile, mm))
	store := newDirStore(t)
	b := &Builder{Mmdebstrap: wrapper, TempDir: tmp}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.Build(ctx, store, integrationSpec(), testEpoch+2, false)
		done <- err
	}()

	// Cancel once mmdebstrap is well under way: once it unpacks (in root
	// mode it has mounted /proc and /sys into its chroot by then, in a
	// mount namespace of its own: the host must never see them).
	pgid, _ := strconv.Atoi(strings.TrimSpace(waitFile(t, pidFile, time.Minute)))
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatal("mmdebstrap did not get under way")
		}
		select {
		case err := <-done:
			t.Fatalf("Build returned before the cancel: %v", err)
		default:
		}
		if m, _ := mountsUnder(tmp); len(m) > 0 {
			t.Fatalf("mmdebstrap's mounts are seen from the host: %q", m)
		}
		debs, _ := filepath.Glob(filepath.Join(tmp, "*", "tmp", "mmdebstrap.*", "var", "cache", "apt", "archives", "*.deb"))
		if len(debs) > 0 {
			t.Logf("cancelling with %d packages downloaded", len(debs))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Build = %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Build did not return within a minute of the cancel")
	}
	t.Logf("Build returned %v after the cancel", time.Since(start).Round(time.Millisecond))
	if groupAlive(pgid) {
		t.Errorf("mmdebstrap's process group %d survived the cancel", pgid)
	}
	if m, _ := mountsUnder(tmp); len(m) > 0 {
		t.Errorf("mounts left behind: %q", m)
	}
	assertEmptyDir(t, tmp)
	if refs := store.refs(t); len(refs) != 0 {
		t.Errorf("cancelled build left refs %q", refs)
	}
}

// tLogWriter sends mmdebstrap's output to the test log.
type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
