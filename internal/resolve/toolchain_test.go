package resolve

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/source"
	"github.com/labbake/labbake/internal/source/gobuild"
	"github.com/labbake/labbake/internal/source/gobuild/gobuildtest"
)

// A go input built by a fetched toolchain pins the toolchain's hash in the
// lock; a frozen build that would download an unpinned toolchain is
// refused, and a pinned one is verified against the lock, not the checksum
// database.
func TestGoInputToolchain(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goCmd, "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	release := strings.TrimSpace(string(out))
	dir := t.TempDir()
	gobuildtest.WriteProxy(t, dir, gobuildtest.Hello()...)
	data := gobuildtest.HostGoToolchain(t, release)
	gobuildtest.WriteToolchain(t, dir, release, data)
	zipPath := filepath.Join(t.TempDir(), "tc.zip")
	os.WriteFile(zipPath, data, 0o644)
	h1, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	srv := gobuildtest.Serve(t, dir)
	gocache := t.TempDir()
	wrong := gobuildtest.WrongGo(t, "go1.0.1")
	spec := gobuild.Spec{Module: "labbake.test/hello", Version: "v1.2.3", Packages: []string{"cmd/hello"}, Toolchain: release}
	key := gobuild.ToolchainKey(release)

	resolver := func(lock *Lock, frozen bool, env map[string]string) *Resolver {
		c, err := cache.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return &Resolver{
			Cache:   c,
			Fetcher: &source.Fetcher{},
			Go: &gobuild.Builder{
				Go:         wrong,
				Getenv:     func(k string) string { return env[k] },
				GoCache:    gocache,
				Toolchains: filepath.Join(c.Dir(), "go", "toolchain"),
				TempDir:    t.TempDir(),
			},
			Lock:   lock,
			Frozen: frozen,
		}
	}
	// No checksum database knows the test's toolchain: trusted on first
	// use (GONOSUMDB), then pinned.
	first := resolver(newLock(t), false, map[string]string{"GOPROXY": srv.URL, "GONOSUMDB": "labbake.test,golang.org/toolchain"})
	want, err := first.GoInput(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := first.Lock.Get(key); !ok || v != h1 {
		t.Errorf("lock: %q = %q, want %s", key, v, h1)
	}
	if want.Toolchain != iox.DigestBytes(data) || !first.Cache.Has(want.Toolchain) {
		t.Errorf("output's toolchain blob %q, want the zip %s", want.Toolchain, iox.DigestBytes(data))
	}
	if d, ok, _ := first.Cache.Ref(key); !ok || d != want.Toolchain {
		t.Errorf("cache ref %q → %q", key, d)
	}

	// Elsewhere, frozen: the lock's pins, a checksum database that would
	// fail if asked.
	noDB := map[string]string{"GOPROXY": srv.URL, "GONOSUMDB": "labbake.test", "GOSUMDB": "sum.golang.org http://127.0.0.1:1"}
	unpinned := newLock(t)
	for k, v := range first.Lock.inputs {
		if k != key {
			unpinned.Set(k, v)
		}
	}
	_, err = resolver(unpinned, true, noDB).GoInput(context.Background(), spec)
	t.Logf("frozen, toolchain not pinned: %v", err)
	if !errors.Is(err, ErrFrozen) || !errors.Is(err, gobuild.ErrUnpinned) || !IsInputError(err) || !strings.Contains(err.Error(), key) {
		t.Errorf("frozen, toolchain not pinned: %v", err)
	}

	pinned := newLock(t)
	for k, v := range first.Lock.inputs {
		pinned.Set(k, v)
	}
	other := "gotoolchain " + release + " plan9/386"
	pinned.Set(other, h1)
	r := resolver(pinned, true, noDB)
	got, err := r.GoInput(context.Background(), spec)
	if err != nil || got.Digest != want.Digest || got.Toolchain != want.Toolchain {
		t.Fatalf("frozen, pinned: %+v, %v; want %s", got, err, want.Digest)
	}
	// A lock made on two kinds of machine keeps both pins.
	if used := r.Used(); !used[key] || !used[other] {
		t.Errorf("used %v, want %q and %q", used, key, other)
	}

	// Pinned otherwise: refused, naming both hashes.
	forged := newLock(t)
	for k, v := range first.Lock.inputs {
		forged.Set(k, v)
	}
	bad := "h1:" + strings.Repeat("A", 43) + "="
	forged.Set(key, bad)
	_, err = resolver(forged, true, noDB).GoInput(context.Background(), spec)
	if !errors.Is(err, iox.ErrDigestMismatch) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), h1) {
		t.Errorf("pinned otherwise: %v", err)
	}
}

func newLock(t *testing.T) *Lock {
	t.Helper()
	l, err := LoadLock(filepath.Join(t.TempDir(), LockFile))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
