package gobuild

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/source/gobuild/gobuildtest"
)

// env is a user environment for the go command: the test's proxy, and no
// checksum database for its private modules.
func env(proxy string) func(string) string {
	return func(k string) string {
		switch k {
		case "GOPROXY":
			return proxy
		case "GONOSUMDB":
			return "labbake.test"
		}
		return ""
	}
}

func requireGo(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
}

// hello is the spec of labbake.test/hello's cmd/hello.
func hello() Spec {
	return Spec{Module: "labbake.test/hello", Version: "v1.2.3", Packages: []string{"cmd/hello"},
		LDFlags: []string{"-s -w", "-X labbake.test/hello/version.Version=v1.2.3"}}
}

type fixture struct {
	srv   *gobuildtest.Server
	b     *Builder
	cache *cache.Cache
}

func newFixture(t *testing.T, srv *gobuildtest.Server) *fixture {
	t.Helper()
	c, err := cache.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, cache: c, b: &Builder{Getenv: env(srv.URL), GoCache: sharedGoCache, TempDir: t.TempDir()}}
}

// sharedGoCache is the GOCACHE of most tests: the standard library is
// compiled once. TestBuild's second cache has its own.
var sharedGoCache string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "labbake-gocache-")
	if err != nil {
		panic(err)
	}
	sharedGoCache = d
	code := m.Run()
	exec.Command("chmod", "-R", "u+w", d).Run()
	os.RemoveAll(d)
	os.Exit(code)
}

func serveHello(t *testing.T) *gobuildtest.Server {
	dir := t.TempDir()
	gobuildtest.WriteProxy(t, dir, gobuildtest.Hello()...)
	return gobuildtest.Serve(t, dir)
}

// runBinary runs a cached binary and returns its output.
func runBinary(t *testing.T, c *cache.Cache, digest string) string {
	t.Helper()
	p, err := c.Path(digest)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "exe")
	data, _ := os.ReadFile(p)
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe).CombinedOutput()
	if err != nil {
		t.Fatalf("running the binary: %v\n%s", err, out)
	}
	return string(out)
}

// A go input builds from the module proxy into the cache, once: the
// second time the cache answers without the go command; a second cache
// gives the same bytes; without the output, the cached modules build it
// again with the proxy gone.
func TestBuild(t *testing.T) {
	requireGo(t)
	ctx := context.Background()
	srv := serveHello(t)
	a := newFixture(t, srv)
	s := hello()
	res, err := a.b.Build(ctx, a.cache, s, Pins{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Built || srv.Requests() == 0 {
		t.Fatalf("built %v with %d proxy requests", res.Built, srv.Requests())
	}
	if out := runBinary(t, a.cache, res.Digest); out != "hello, lab v1.2.3\n" {
		t.Errorf("the binary says %q", out)
	}
	// What the go command itself says of the binary: upstream's godebug
	// line, trimmed paths, no cgo, the module versions (with -trimpath it
	// does not record -ldflags: the binary's own output shows the -X).
	bin, _ := a.cache.Path(res.Digest)
	info, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, info)
	}
	for _, want := range []string{"\tpath\tlabbake.test/hello/cmd/hello", "\tdep\tlabbake.test/greet\tv1.0.0\th1:", "\tmod\tlabbake.test/hello\tv1.2.3\th1:",
		"DefaultGODEBUG=", "panicnil=1", "-trimpath=true", "CGO_ENABLED=0", "GOAMD64=v1"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("go version -m lacks %q:\n%s", want, info)
		}
	}
	// go.sum: both modules, their zips and go.mod files.
	p, _ := a.cache.Path(res.GoSum)
	sum, _ := os.ReadFile(p)
	for _, m := range []string{"labbake.test/greet v1.0.0 h1:", "labbake.test/greet v1.0.0/go.mod h1:", "labbake.test/hello v1.2.3 h1:", "labbake.test/hello v1.2.3/go.mod h1:"} {
		if !bytes.Contains(sum, []byte(m)) {
			t.Errorf("go.sum has no %q:\n%s", m, sum)
		}
	}
	// Module files: the index and each module's .info, .mod and .zip.
	if len(res.Modules) != 7 {
		t.Errorf("modules %q, want the index and 6 files", res.Modules)
	}
	t.Logf("built %d bytes in %s, %d module blobs", res.Size, res.Took, len(res.Modules))

	pins := Pins{GoSum: res.GoSum, Binary: res.Digest}
	again, err := a.b.Build(ctx, a.cache, s, pins, true)
	if err != nil || again.Built || again.Digest != res.Digest || len(again.Modules) != 7 {
		t.Fatalf("second build: %+v, %v", again, err)
	}

	b := newFixture(t, srv)
	b.b.GoCache = filepath.Join(b.cache.Dir(), "gocache")
	other, err := b.b.Build(ctx, b.cache, s, Pins{GoSum: res.GoSum}, false)
	if err != nil || other.Digest != res.Digest || other.GoSum != res.GoSum {
		t.Fatalf("another cache: %+v, %v; want %s", other, err, res.Digest)
	}

	// Without the output, offline: the cached modules, no proxy.
	srv.Close()
	if err := a.cache.Remove(res.Digest); err != nil {
		t.Fatal(err)
	}
	rebuilt, err := a.b.Build(ctx, a.cache, s, pins, true)
	if err != nil || !rebuilt.Built || rebuilt.Digest != res.Digest {
		t.Fatalf("offline rebuild: %+v, %v", rebuilt, err)
	}
	t.Logf("offline rebuild from the cached modules in %s", rebuilt.Took)
}

// Several packages make a tar of their binaries.
func TestBuildSeveral(t *testing.T) {
	requireGo(t)
	f := newFixture(t, serveHello(t))
	s := hello()
	s.Packages = []string{"cmd/hello", "labbake.test/hello/cmd/bye"}
	res, err := f.b.Build(context.Background(), f.cache, s, Pins{}, false)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := f.cache.Open(res.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode != 0o755 || h.Size < 1000 || h.ModTime.Unix() != 0 {
			t.Errorf("member %+v", h)
		}
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "bye hello" {
		t.Errorf("members %q", names)
	}
}

// What the cache or the host cannot give is an error that says so.
func TestBuildRefused(t *testing.T) {
	requireGo(t)
	ctx := context.Background()
	f := newFixture(t, serveHello(t))
	s := hello()
	if _, err := f.b.Build(ctx, f.cache, s, Pins{}, true); !errors.Is(err, iox.ErrOffline) {
		t.Errorf("offline with nothing cached: %v", err)
	}
	wrong := s
	wrong.Toolchain = "go1.19.13"
	_, err := f.b.Build(ctx, f.cache, wrong, Pins{}, false)
	t.Logf("wrong toolchain: %v", err)
	if !errors.Is(err, ErrToolchain) || !strings.Contains(err.Error(), "needs go1.19.13") {
		t.Errorf("wrong toolchain: %v", err)
	}
	res, err := f.b.Build(ctx, f.cache, s, Pins{}, false)
	if err != nil {
		t.Fatal(err)
	}
	const other = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	_, err = f.b.Build(ctx, f.cache, s, Pins{GoSum: res.GoSum, Binary: other}, false)
	if !errors.Is(err, iox.ErrDigestMismatch) || !strings.Contains(err.Error(), res.Digest) || !strings.Contains(err.Error(), other) {
		t.Errorf("output pinned otherwise: %v", err)
	}
	_, err = f.b.Build(ctx, f.cache, s, Pins{GoSum: other}, false)
	if !errors.Is(err, iox.ErrDigestMismatch) || !strings.Contains(err.Error(), other) {
		t.Errorf("go.sum pinned otherwise: %v", err)
	}
}

// A module zip changed in the cache is never built: changed in place, the
// cache's own check names the module; changed consistently (a new blob
// and index, as a forged bundle could bring), the go command's check
// against the pinned go.sum does.
func TestBuildTampered(t *testing.T) {
	requireGo(t)
	ctx := context.Background()
	f := newFixture(t, serveHello(t))
	s := hello()
	res, err := f.b.Build(ctx, f.cache, s, Pins{}, false)
	if err != nil {
		t.Fatal(err)
	}
	pins := Pins{GoSum: res.GoSum}
	x, err := cachedIndex(f.cache, res.GoSum)
	if err != nil || x == nil {
		t.Fatal(x, err)
	}
	var zipFile ModuleFile
	for _, mf := range x {
		if strings.HasSuffix(mf.Path, "greet/@v/v1.0.0.zip") {
			zipFile = mf
		}
	}
	evil := gobuildtest.Zip(t, gobuildtest.Module{Path: "labbake.test/greet", Version: "v1.0.0", GoMod: "module labbake.test/greet\n\ngo 1.22\n",
		Files: map[string]string{"greet.go": "package greet\n\nfunc Hello(name string) string { return \"pwned \" + name }\n"}})

	// In place: a fresh process (cache) sees the blob no longer hashes to
	// its name.
	p, _ := f.cache.Path(zipFile.Digest)
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, evil, 0o644); err != nil {
		t.Fatal(err)
	}
	c2, err := cache.Open(f.cache.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Remove(res.Digest); err != nil {
		t.Fatal(err)
	}
	_, err = f.b.Build(ctx, c2, s, pins, true)
	t.Logf("zip changed in place: %v", err)
	if err == nil || !strings.Contains(err.Error(), "module labbake.test/greet@v1.0.0") || !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("zip changed in place: %v", err)
	}

	// Consistently: a valid blob with other content, and an index naming it.
	c3, err := cache.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	evilD, _, _ := c3.Put(ctx, bytes.NewReader(evil), "")
	var forged Index
	for _, mf := range x {
		if mf.Path == zipFile.Path {
			mf.Digest = evilD
		} else {
			copyBlob(t, f.cache, c3, mf.Digest)
		}
		forged = append(forged, mf)
	}
	copyBlob(t, f.cache, c3, res.GoSum)
	idx, _, _ := c3.Put(ctx, bytes.NewReader(forged.Bytes()), "")
	c3.SetRef(modulesKey(res.GoSum), idx)
	_, err = f.b.Build(ctx, c3, s, pins, true)
	t.Logf("forged zip: %v", err)
	if err == nil || !strings.Contains(err.Error(), "labbake.test/greet@v1.0.0") || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("forged zip: %v", err)
	}
}

func copyBlob(t *testing.T, from, to *cache.Cache, d string) {
	t.Helper()
	rc, err := from.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, _, err := to.Put(context.Background(), rc, d); err != nil {
		t.Fatal(err)
	}
}
