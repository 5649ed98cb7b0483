package gobuild

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/source/gobuild/gobuildtest"
)

// fakeRelease is the Go release of the fake toolchains: no real one.
const fakeRelease = "go1.99.1"

// zipFile is a file of a test zip.
type zipFile = gobuildtest.ToolchainFile

func zf(name, body string, mode fs.FileMode) zipFile {
	return zipFile{Name: name, Body: body, Mode: mode}
}

// fakeGo is a bin/go that answers `go env GOVERSION` with release.
func fakeGo(release string) string {
	return "#!/bin/sh\nif [ \"$1 $2\" = \"env GOVERSION\" ]; then echo " + release + "; exit 0; fi\necho \"fake go: $*\" >&2\nexit 2\n"
}

// fakeToolchainFiles are the files of a fake toolchain of release: a bin/go
// that knows its release, a compiler whose zip mode is not executable, a
// _go.mod, a plain file.
func fakeToolchainFiles(release string) []zipFile {
	return []zipFile{
		zf("README.md", "a fake Go\n", 0o644),
		zf("bin/go", fakeGo(release), 0o755),
		zf("lib/time/update.bash", "#!/bin/sh\n", 0o755),
		zf("pkg/tool/linux_amd64/compile", "#!/bin/sh\n", 0o644),
		zf("src/_go.mod", "module std\n\ngo 1.99\n", 0o644),
	}
}

// toolchainZip makes a toolchain zip of release for this host.
func toolchainZip(t testing.TB, release string, files []zipFile) []byte {
	t.Helper()
	return gobuildtest.ToolchainZip(t, release, files...)
}

// h1Of is the go.sum hash of a zip.
func h1Of(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.zip")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := dirhash.HashZip(p, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// toolchainServer is a module proxy with toolchain zips, and a checksum
// database (sum.test, served through the proxy like proxy.golang.org
// serves sum.golang.org) that vouches for given hashes.
type toolchainServer struct {
	URL    string
	vkey   string            // the database's verifier key: GOSUMDB
	zips   map[string][]byte // by release
	hashes map[string]string // what the database says, by release

	mu          sync.Mutex
	zipRequests int
	dbRequests  int
}

func newToolchainServer(t *testing.T) *toolchainServer {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "sum.test")
	if err != nil {
		t.Fatal(err)
	}
	ts := &toolchainServer{vkey: vkey, zips: map[string][]byte{}, hashes: map[string]string{}}
	goos, goarch := hostPlatform()
	db := sumdb.NewServer(sumdb.NewTestServer(skey, func(path, vers string) ([]byte, error) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for rel, h := range ts.hashes {
			if path == ToolchainModule && vers == ToolchainVersion(rel, goos, goarch) {
				return fmt.Appendf(nil, "%s %s %s\n%s %s/go.mod %s\n", path, vers, h, path, vers, h), nil
			}
		}
		return nil, fmt.Errorf("%s@%s: %w", path, vers, fs.ErrNotExist)
	}))
	mux := http.NewServeMux()
	mux.HandleFunc("/sumdb/sum.test/supported", func(w http.ResponseWriter, r *http.Request) {})
	mux.Handle("/sumdb/sum.test/", http.StripPrefix("/sumdb/sum.test", db))
	mux.HandleFunc("/golang.org/toolchain/@v/", func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for rel, data := range ts.zips {
			if r.URL.Path == "/golang.org/toolchain/@v/"+ToolchainVersion(rel, goos, goarch)+".zip" {
				ts.zipRequests++
				w.Write(data)
				return
			}
		}
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/sumdb/") {
			ts.mu.Lock()
			ts.dbRequests++
			ts.mu.Unlock()
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ts.URL = srv.URL
	return ts
}

// serve adds a toolchain zip, and what the database says of it.
func (ts *toolchainServer) serve(release string, data []byte, dbHash string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.zips[release] = data
	ts.hashes[release] = dbHash
}

func (ts *toolchainServer) requests() (zips, db int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.zipRequests, ts.dbRequests
}

// settings is a user environment from pairs.
func settings(kv ...string) func(string) string {
	return func(k string) string {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1]
			}
		}
		return ""
	}
}

// testLog sends the builder's log lines to the test's.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openCache(t testing.TB) *cache.Cache {
	t.Helper()
	c, err := cache.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var noHost = hostGo{says: "there is no go on PATH", err: ErrNoGo}

// A toolchain is fetched once, verified by the checksum database and
// unpacked with its modes and go.mod files; then the unpacked dir, or the
// zip in the cache, serves it with no request, offline too.
func TestToolchainFetch(t *testing.T) {
	ctx := context.Background()
	ts := newToolchainServer(t)
	data := toolchainZip(t, fakeRelease, fakeToolchainFiles(fakeRelease))
	good := h1Of(t, data)
	ts.serve(fakeRelease, data, good)
	c := openCache(t)
	b := &Builder{Getenv: settings("GOPROXY", ts.URL, "GOSUMDB", ts.vkey), Toolchains: filepath.Join(t.TempDir(), "toolchain"), Log: newLog(t)}
	work := t.TempDir()

	dir, h1, err := b.toolchain(ctx, c, fakeRelease, Pins{}, false, work, noHost, b.log())
	if err != nil {
		t.Fatal(err)
	}
	if h1 != good {
		t.Errorf("hash %s, want %s", h1, good)
	}
	if z, db := ts.requests(); z != 1 || db == 0 {
		t.Errorf("%d zip and %d checksum database requests, want 1 and some", z, db)
	}
	goos, goarch := hostPlatform()
	if want := filepath.Join(b.Toolchains, fakeRelease+"."+goos+"-"+goarch); dir != want {
		t.Errorf("dir %s, want %s", dir, want)
	}
	checkUnpacked(t, dir)
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("left in the work dir: %v", left)
	}
	zipBlob, err := toolchainBlob(c, fakeRelease)
	if err != nil || zipBlob != iox.DigestBytes(data) {
		t.Errorf("cache ref %q → %s, %v; want the zip %s", ToolchainKey(fakeRelease), zipBlob, err, iox.DigestBytes(data))
	}

	for _, step := range []struct {
		name    string
		prepare func()
		pins    Pins
	}{
		{"unpacked", func() {}, Pins{}},
		{"unpacked, pinned", func() {}, Pins{Toolchain: good, Frozen: true}},
		{"zip in the cache", func() { os.RemoveAll(dir) }, Pins{}},
		{"zip in the cache, pinned", func() { os.RemoveAll(dir) }, Pins{Toolchain: good, Frozen: true}},
	} {
		t.Run(step.name, func(t *testing.T) {
			step.prepare()
			d, h, err := b.toolchain(ctx, c, fakeRelease, step.pins, true, work, noHost, b.log())
			if err != nil || d != dir || h != good {
				t.Fatalf("%s %s, %v", d, h, err)
			}
			if z, _ := ts.requests(); z != 1 {
				t.Errorf("%d zip requests, want the first only", z)
			}
			checkUnpacked(t, dir)
		})
	}
	// A dir that labbake did not unpack is not used, nor removed.
	os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	if _, _, err := b.toolchain(ctx, c, fakeRelease, Pins{}, true, work, noHost, b.log()); err == nil || !strings.Contains(err.Error(), "not a toolchain labbake unpacked") {
		t.Errorf("foreign dir: %v", err)
	}
}

// checkUnpacked checks the fake toolchain unpacked in dir: bin/go runs,
// modes and go.mod files are the go command's.
func checkUnpacked(t *testing.T, dir string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(dir, "bin", "go"), "env", "GOVERSION").Output()
	if err != nil || strings.TrimSpace(string(out)) != fakeRelease {
		t.Errorf("bin/go env GOVERSION: %q, %v", out, err)
	}
	for name, mode := range map[string]fs.FileMode{
		"README.md": 0o644, "bin/go": 0o755, "lib/time/update.bash": 0o755,
		"pkg/tool/linux_amd64/compile": 0o755, "src/_go.mod": 0o644, "src/go.mod": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v, %v; want %v", name, fi.Mode(), err, mode)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "src", "go.mod")); string(b) != "module std\n\ngo 1.99\n" {
		t.Errorf("src/go.mod: %q", b)
	}
}

// What cannot be verified, or had, is refused before anything is stored
// or unpacked, each with an error that says why.
func TestToolchainRefused(t *testing.T) {
	data := toolchainZip(t, fakeRelease, fakeToolchainFiles(fakeRelease))
	good := h1Of(t, data)
	evil := toolchainZip(t, fakeRelease, append(fakeToolchainFiles(fakeRelease), zf("bin/evil", "#!/bin/sh\n", 0o755)))
	evilH1 := h1Of(t, evil)
	other := "h1:" + strings.Repeat("A", 43) + "="
	goos, goarch := hostPlatform()
	zipName := ToolchainVersion(fakeRelease, goos, goarch) + ".zip"
	for _, tc := range []struct {
		name     string
		serve    []byte
		dbSays   string // what the checksum database says
		pins     Pins
		offline  bool
		env      []string
		is       []error
		says     []string
		zips, db int // requests; -1: any
	}{
		{name: "tampered zip", serve: evil, dbSays: good, is: []error{iox.ErrDigestMismatch}, says: []string{zipName, evilH1, good, "checksum database sum.test"}, zips: 1, db: -1},
		{name: "pinned otherwise", serve: data, dbSays: good, pins: Pins{Toolchain: other}, is: []error{iox.ErrDigestMismatch}, says: []string{zipName, good, other, "labbake.lock pins"}, zips: 1},
		{name: "offline", serve: data, dbSays: good, offline: true, is: []error{iox.ErrOffline, ErrNoGo}, says: []string{"needs " + fakeRelease, "no go on PATH", "install " + fakeRelease, "not in the cache"}},
		{name: "frozen, not pinned", serve: data, dbSays: good, pins: Pins{Frozen: true}, is: []error{ErrUnpinned}, says: []string{`"` + ToolchainKey(fakeRelease) + `" is not in labbake.lock`}},
		{name: "not on the proxy", is: []error{ErrNoGo}, says: []string{"needs " + fakeRelease, "404", "install " + fakeRelease}},
		{name: "GOPROXY=off", serve: data, dbSays: good, env: []string{"GOPROXY", "off"}, is: []error{ErrNoGo}, says: []string{"GOPROXY=off"}},
		{name: "GOPROXY=direct", serve: data, dbSays: good, env: []string{"GOPROXY", "direct"}, is: []error{ErrNoGo}, says: []string{"direct: a toolchain comes from a module proxy only"}},
		{name: "unknown to the database", serve: data, dbSays: "", is: nil, says: []string{"verifying golang.org/toolchain@v0.0.1-go1.99.1", "checksum database sum.test"}, zips: 1, db: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newToolchainServer(t)
			if tc.serve != nil {
				ts.serve(fakeRelease, tc.serve, tc.dbSays)
			}
			if tc.dbSays == "" {
				ts.hashes = map[string]string{}
			}
			env := append([]string{"GOPROXY", ts.URL, "GOSUMDB", ts.vkey}, tc.env...)
			if len(tc.env) > 0 {
				env = append(tc.env, env...) // settings takes the first
			}
			c := openCache(t)
			b := &Builder{Getenv: settings(env...), Toolchains: filepath.Join(t.TempDir(), "toolchain"), Log: newLog(t)}
			work := t.TempDir()
			_, _, err := b.toolchain(context.Background(), c, fakeRelease, tc.pins, tc.offline, work, noHost, b.log())
			t.Logf("error: %v", err)
			if err == nil {
				t.Fatal("no error")
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("not %v", target)
				}
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("the error does not say %q", s)
				}
			}
			z, db := ts.requests()
			if z != tc.zips || (tc.db != -1 && db != tc.db) {
				t.Errorf("%d zip and %d checksum database requests, want %d and %d", z, db, tc.zips, tc.db)
			}
			if _, ok, _ := c.Ref(ToolchainKey(fakeRelease)); ok {
				t.Error("the cache has a toolchain ref")
			}
			if blobs, _ := c.List(); len(blobs) != 0 {
				t.Errorf("the cache has %d blobs", len(blobs))
			}
			if left, _ := os.ReadDir(b.Toolchains); len(left) != 0 {
				t.Errorf("left in the toolchain dir: %v", left)
			}
			if left, _ := os.ReadDir(work); len(left) != 0 {
				t.Errorf("left in the work dir: %v", left)
			}
		})
	}
}

// A pin, or a module the user keeps out of the checksum database, needs
// no database: it is not asked.
func TestToolchainWithoutSumDB(t *testing.T) {
	data := toolchainZip(t, fakeRelease, fakeToolchainFiles(fakeRelease))
	good := h1Of(t, data)
	for _, tc := range []struct {
		name string
		pins Pins
		env  []string
	}{
		{"pinned", Pins{Toolchain: good, Frozen: true}, nil},
		{"GONOSUMDB", Pins{}, []string{"GONOSUMDB", "example.com,golang.org/toolchain"}},
		{"GOPRIVATE", Pins{}, []string{"GOPRIVATE", "golang.org"}},
		{"GOSUMDB=off", Pins{}, []string{"GOSUMDB", "off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newToolchainServer(t)
			ts.serve(fakeRelease, data, "")
			// A database nothing answers at: asking it would fail.
			env := append(tc.env, "GOPROXY", ts.URL, "GOSUMDB", ts.vkey+" http://127.0.0.1:1")
			c := openCache(t)
			b := &Builder{Getenv: settings(env...), Toolchains: filepath.Join(t.TempDir(), "toolchain"), Log: newLog(t)}
			dir, h1, err := b.toolchain(context.Background(), c, fakeRelease, tc.pins, false, t.TempDir(), noHost, b.log())
			if err != nil || h1 != good {
				t.Fatalf("%s, %v", h1, err)
			}
			checkUnpacked(t, dir)
			if z, db := ts.requests(); z != 1 || db != 0 {
				t.Errorf("%d zip and %d checksum database requests, want 1 and 0", z, db)
			}
		})
	}
}

// A zip whose names leave the module's prefix, repeat, or are not files
// is not unpacked: nothing is left behind.
func TestUnpackToolchainRefuses(t *testing.T) {
	goos, goarch := hostPlatform()
	mod := ToolchainModule + "@" + ToolchainVersion(fakeRelease, goos, goarch)
	base := fakeToolchainFiles(fakeRelease)
	for _, tc := range []struct {
		name  string
		extra zipFile
		says  string
	}{
		{"outside the prefix", zf("/golang.org/toolchain@v0.0.1-go1.0.0.linux-amd64/bin/go", "x", 0o755), "is not a file under"},
		{"no prefix", zf("/bin/go", "x", 0o755), "is not a file under"},
		{"dot dot", zf("bin/../../x", "x", 0o644), "is not a file under"},
		{"absolute", zf("/"+mod+"//x", "x", 0o644), "is not a file under"},
		{"repeated", zf("bin/go", "x", 0o755), "repeated"},
		{"the marker", zf(toolchainMarker, "h1:x", 0o644), "repeated"},
		{"symlink", zf("bin/link", "/etc/passwd", fs.ModeSymlink|0o777), "not a regular file"},
		{"device", zf("dev", "", fs.ModeDevice|0o644), "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "tc.zip")
			if err := os.WriteFile(p, toolchainZip(t, fakeRelease, append(slices.Clone(base), tc.extra)), 0o644); err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			err := unpackToolchain(p, mod, root, filepath.Join(root, "tc"), "h1:x")
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %v, want one saying %q", err, tc.says)
			}
			if left, _ := os.ReadDir(root); len(left) != 0 {
				t.Errorf("left: %v", left)
			}
		})
	}
}

func TestParseGOPROXY(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"", "https://proxy.golang.org, direct", ""},
		{"https://a.example/", "https://a.example", ""},
		{"https://a.example,https://b.example|direct", "https://a.example, https://b.example|, direct", ""},
		{"off", "off", ""},
		{"file:///srv/proxy,off", "file:///srv/proxy, off", ""},
		{" , https://a.example ,", "https://a.example", ""},
		{"a.example", "", "not an http(s) or file URL"},
		{"ftp://a.example", "", "not an http(s) or file URL"},
		{",", "", "empty list"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseGOPROXY(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("%v, want an error saying %q", err, tc.err)
				}
				return
			}
			var s []string
			for _, e := range got {
				x := e.url
				if e.anyErrors {
					x += "|"
				}
				s = append(s, x)
			}
			if err != nil || strings.Join(s, ", ") != tc.want {
				t.Errorf("%q, %v; want %q", s, err, tc.want)
			}
		})
	}
}

func TestParseGOSUMDB(t *testing.T) {
	_, vkey, _ := note.GenerateKey(rand.Reader, "sum.example.com")
	for _, tc := range []struct {
		in, name, base, err string
	}{
		{"sum.golang.org", "sum.golang.org", "", ""},
		{knownSumDBs["sum.golang.org"], "sum.golang.org", "", ""},
		{"sum.golang.google.cn", "sum.golang.org", "https://sum.golang.google.cn", ""},
		{vkey + " https://db.example/sum/", "sum.example.com", "https://db.example/sum", ""},
		{"sum.example.com", "", "", "GOSUMDB"},
		{vkey + " ftp://x", "", "", "not an http(s) URL"},
		{vkey + " https://x y", "", "", "want NAME[+KEY] [URL]"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, name, base, err := parseGOSUMDB(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("%v, want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil || name != tc.name || base != tc.base {
				t.Errorf("%q %q %v; want %q %q", name, base, err, tc.name, tc.base)
			}
		})
	}
}

func TestToolchainKey(t *testing.T) {
	goos, goarch := hostPlatform()
	if k := ToolchainKey("go1.26.8"); k != "gotoolchain go1.26.8 "+goos+"/"+goarch {
		t.Errorf("key %q", k)
	}
	if v := ToolchainVersion("go1.26.8", "linux", "amd64"); v != "v0.0.1-go1.26.8.linux-amd64" {
		t.Errorf("version %q", v)
	}
	for _, tc := range []struct{ key, err string }{
		{"gotoolchain go1.26.8 linux/amd64", ""},
		{"gotoolchain go1.27rc1 darwin/arm64", ""},
		{"gotoolchain go1.26.8", "want"},
		{"gotoolchain go1.26.8 linux/amd64 x", "want"},
		{"go go1.26.8 linux/amd64", "want"},
		{"gotoolchain 1.26.8 linux/amd64", "not a Go release"},
		{"gotoolchain go1.26.8 linux", "not GOOS/GOARCH"},
	} {
		_, _, err := ParseToolchainKey(tc.key)
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want %q", tc.key, err, tc.err)
		}
	}
	for _, tc := range []struct {
		h1 string
		ok bool
	}{
		{"h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM=", true},
		{"h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RX=", false},
		{"h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM", false},
		{"h2:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM=", false},
		{"sha256:" + strings.Repeat("a", 64), false},
		{"", false},
	} {
		if err := CheckH1(tc.h1); (err == nil) != tc.ok {
			t.Errorf("CheckH1(%q) = %v", tc.h1, err)
		}
	}
}

// hostRelease is the release of the go on PATH.
func hostRelease(t *testing.T) string {
	t.Helper()
	goCmd, _ := exec.LookPath("go")
	v, err := (&Builder{}).goVersion(context.Background(), goCmd)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wrongGo is a go command of another release than the host's.
func wrongGo(t *testing.T) string { return gobuildtest.WrongGo(t, "go1.0.1") }

// A build whose host go is another release runs the toolchain fetched
// from the module proxy (here one whose bin/go is the host's go under the
// host's release): the same bytes as the host's go; offline, the cached
// toolchain builds it again with no request.
func TestBuildWithFetchedToolchain(t *testing.T) {
	requireGo(t)
	ctx := context.Background()
	release := hostRelease(t)
	dir := t.TempDir()
	gobuildtest.WriteProxy(t, dir, gobuildtest.Hello()...)
	data := gobuildtest.HostGoToolchain(t, release)
	gobuildtest.WriteToolchain(t, dir, release, data)
	srv := gobuildtest.Serve(t, dir)
	s := hello()
	s.Toolchain = release

	host := newFixture(t, srv)
	want, err := host.b.Build(ctx, host.cache, s, Pins{}, false)
	if err != nil || want.Toolchain != "" || want.ToolchainZip != "" {
		t.Fatalf("host go: %+v, %v", want, err)
	}

	f := newFixture(t, srv)
	f.b.Go = wrongGo(t)
	f.b.Toolchains = filepath.Join(f.cache.Dir(), "go", "toolchain")
	f.b.Log = newLog(t)
	h1 := h1Of(t, data)
	res, err := f.b.Build(ctx, f.cache, s, Pins{Toolchain: h1}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != want.Digest || res.GoSum != want.GoSum || res.Toolchain != h1 || res.ToolchainZip != iox.DigestBytes(data) {
		t.Errorf("fetched toolchain: %+v; want output %s, toolchain %s", res, want.Digest, h1)
	}

	n := srv.Requests()
	if err := f.cache.Remove(res.Digest); err != nil {
		t.Fatal(err)
	}
	pins := Pins{GoSum: res.GoSum, Binary: res.Digest, Toolchain: h1, Frozen: true}
	again, err := f.b.Build(ctx, f.cache, s, pins, true)
	if err != nil || !again.Built || again.Digest != want.Digest || again.Toolchain != h1 {
		t.Fatalf("offline rebuild: %+v, %v", again, err)
	}
	cached, err := f.b.Build(ctx, f.cache, s, pins, true)
	if err != nil || cached.Built || cached.Toolchain != "" || cached.ToolchainZip != res.ToolchainZip {
		t.Fatalf("cached: %+v, %v", cached, err)
	}
	if srv.Requests() != n {
		t.Errorf("%d requests offline", srv.Requests()-n)
	}
}

// With the network (LABBAKE_NET_TESTS=1): the real toolchain of the host's
// release, fetched from proxy.golang.org into an empty cache and verified
// by sum.golang.org, builds the same bytes as the host's go.
func TestFetchedToolchainSameBytes(t *testing.T) {
	if os.Getenv("LABBAKE_NET_TESTS") != "1" {
		t.Skip("set LABBAKE_NET_TESTS=1 to fetch a Go toolchain (about 72 MB) from proxy.golang.org")
	}
	requireGo(t)
	ctx := context.Background()
	release := hostRelease(t)
	srv := serveHello(t)
	s := hello()
	s.Toolchain = release

	host := newFixture(t, srv)
	host.b.GoCache = filepath.Join(t.TempDir(), "gocache")
	start := time.Now()
	want, err := host.b.Build(ctx, host.cache, s, Pins{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host go %s: built %s in %s", release, want.Digest, time.Since(start).Round(time.Millisecond))

	f := newFixture(t, srv)
	f.b.Go = wrongGo(t)
	f.b.GoCache = filepath.Join(t.TempDir(), "gocache")
	f.b.Toolchains = filepath.Join(f.cache.Dir(), "go", "toolchain")
	f.b.Log = newLog(t)
	f.b.Getenv = settings("GOPROXY", srv.URL+",https://proxy.golang.org", "GONOSUMDB", "labbake.test")
	start = time.Now()
	res, err := f.b.Build(ctx, f.cache, s, Pins{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fetched %s (%s): fetched, verified, unpacked and built in %s", release, res.Toolchain, time.Since(start).Round(time.Millisecond))
	if res.Digest != want.Digest || res.GoSum != want.GoSum {
		t.Errorf("the fetched toolchain built %s (go.sum %s), the host's go %s (go.sum %s)", res.Digest, res.GoSum, want.Digest, want.GoSum)
	}
	if CheckH1(res.Toolchain) != nil || res.ToolchainZip == "" {
		t.Errorf("toolchain %q, zip %q", res.Toolchain, res.ToolchainZip)
	}
	goos, goarch := hostPlatform()
	goCmd := filepath.Join(f.b.Toolchains, release+"."+goos+"-"+goarch, "bin", "go")
	if v, err := f.b.goVersion(ctx, goCmd); err != nil || v != release {
		t.Errorf("%s: %q, %v", goCmd, v, err)
	}
}
