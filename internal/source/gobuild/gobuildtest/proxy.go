package gobuildtest

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Module is one version of a module: its go.mod and its files by slash
// path relative to the module root (go.mod is added from GoMod).
type Module struct {
	Path    string
	Version string
	GoMod   string
	Files   map[string]string
	Time    time.Time // the commit time of .info; zero: 2025-01-01
}

// WriteProxy lays the modules out under dir as a GOPROXY serves them:
// MODULE/@v/list, VERSION.info, VERSION.mod and VERSION.zip (the zip as
// golang.org/x/mod/zip makes them: every file under MODULE@VERSION/).
func WriteProxy(t testing.TB, dir string, mods ...Module) {
	t.Helper()
	lists := map[string][]string{}
	for _, m := range mods {
		at := filepath.Join(dir, filepath.FromSlash(escape(m.Path)), "@v")
		if err := os.MkdirAll(at, 0o755); err != nil {
			t.Fatal(err)
		}
		tm := m.Time
		if tm.IsZero() {
			tm = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		info := fmt.Sprintf(`{"Version":%q,"Time":%q}`+"\n", m.Version, tm.Format(time.RFC3339))
		write(t, filepath.Join(at, m.Version+".info"), []byte(info))
		write(t, filepath.Join(at, m.Version+".mod"), []byte(m.GoMod))
		write(t, filepath.Join(at, m.Version+".zip"), Zip(t, m))
		lists[at] = append(lists[at], m.Version)
	}
	for at, vs := range lists {
		slices.Sort(vs)
		write(t, filepath.Join(at, "list"), []byte(strings.Join(vs, "\n")+"\n"))
	}
}

// Zip is the module zip of m.
func Zip(t testing.TB, m Module) []byte {
	t.Helper()
	files := map[string]string{"go.mod": m.GoMod}
	for k, v := range m.Files {
		files[k] = v
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		w, err := zw.Create(m.Path + "@" + m.Version + "/" + n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func write(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// escape is the proxy's case encoding of a module path.
func escape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Server serves a proxy dir over HTTP on 127.0.0.1 and counts requests.
type Server struct {
	URL string
	srv *httptest.Server
	mu  sync.Mutex
	n   int
}

// Serve serves dir until the test ends.
func Serve(t testing.TB, dir string) *Server {
	s := &Server{}
	fs := http.FileServer(http.Dir(dir))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	return s
}

// Requests is how many requests the server has answered.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Close stops the server: later requests fail.
func (s *Server) Close() { s.srv.Close() }

// Hello is a two-module program: labbake.test/hello (a main package at
// cmd/hello and another at cmd/bye, both importing labbake.test/greet)
// at v1.2.3, and labbake.test/greet at v1.0.0. Its godebug line reaches
// the binaries; version.Version is set by -X in tests.
func Hello() []Module {
	return []Module{
		{
			Path: "labbake.test/greet", Version: "v1.0.0",
			GoMod: "module labbake.test/greet\n\ngo 1.22\n",
			Files: map[string]string{"greet.go": `package greet

// Hello greets name.
func Hello(name string) string { return "hello, " + name }
`},
		},
		{
			Path: "labbake.test/hello", Version: "v1.2.3",
			GoMod: "module labbake.test/hello\n\ngo 1.24\n\ngodebug panicnil=1\n\nrequire labbake.test/greet v1.0.0\n",
			Files: map[string]string{
				"version/version.go": "package version\n\n// Version is set by the linker.\nvar Version = \"unset\"\n",
				"cmd/hello/main.go": `package main

import (
	"os"

	"labbake.test/greet"
	"labbake.test/hello/version"
)

func main() { os.Stdout.WriteString(greet.Hello("lab") + " " + version.Version + "\n") }
`,
				"cmd/bye/main.go": `package main

import (
	"os"

	"labbake.test/greet"
)

func main() { os.Stdout.WriteString(greet.Hello("bye") + "\n") }
`,
			},
		},
	}
}

// ToolchainFile is a file of a toolchain zip: its name relative to the
// toolchain's root (one starting with "/" is the zip's name as it is, to
// make broken zips), its content and the mode the zip records.
type ToolchainFile struct {
	Name, Body string
	Mode       fs.FileMode
}

// ToolchainVersion is the golang.org/toolchain version of release for
// goos/goarch: v0.0.1-go1.26.8.linux-amd64.
func ToolchainVersion(release, goos, goarch string) string {
	return "v0.0.1-" + release + "." + goos + "-" + goarch
}

// ToolchainZip is a golang.org/toolchain module zip of release for this
// host holding files.
func ToolchainZip(t testing.TB, release string, files ...ToolchainFile) []byte {
	t.Helper()
	prefix := "golang.org/toolchain@" + ToolchainVersion(release, runtime.GOOS, runtime.GOARCH) + "/"
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		name := prefix + f.Name
		if n, ok := strings.CutPrefix(f.Name, "/"); ok {
			name = n
		}
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(f.Mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// HostGoToolchain is a toolchain zip of release whose bin/go runs the go
// command on PATH: a stand-in for the real toolchain of the host's release
// in tests that have no network.
func HostGoToolchain(t testing.TB, release string) []byte {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err == nil {
		goCmd, err = filepath.EvalSymlinks(goCmd)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ToolchainZip(t, release, ToolchainFile{"bin/go", "#!/bin/sh\nexec '" + goCmd + "' \"$@\"\n", 0o755})
}

// WriteToolchain lays a toolchain zip of release for this host out under
// a proxy dir.
func WriteToolchain(t testing.TB, dir, release string, zipData []byte) {
	t.Helper()
	at := filepath.Join(dir, "golang.org", "toolchain", "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(at, ToolchainVersion(release, runtime.GOOS, runtime.GOARCH)+".zip"), zipData)
}

// WrongGo writes a go command that says it is release and does nothing
// else: a host go of the wrong release.
func WrongGo(t testing.TB, release string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "go")
	write(t, p, []byte("#!/bin/sh\nif [ \"$1 $2\" = \"env GOVERSION\" ]; then echo "+release+"; exit 0; fi\necho \"fake go: $*\" >&2\nexit 2\n"))
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
