package upstream

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/golden"
	"github.com/labbake/labbake/internal/source"
)

func TestParseRelease(t *testing.T) {
	rel := parseRelease([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nVersion: 13.8\nDate: Sat, 21 Nov 2026 09:15:44 UTC\nMD5Sum:\n 203e1451a4c2e0edf3646a5da3cec2d8  9679304 main/binary-amd64/Packages.xz\nSHA256:\n 2efd6103f013081f8118f4c9f228739bc97bff2e4e1de496f80458c7e72a24ac 56634892 main/binary-amd64/Packages\n be3d7d96a040eda0505c1808cccc67f183bbc05dff0842c50f88e6c396557412  9679304 main/binary-amd64/Packages.xz\n bad line\n"))
	if rel.version != "13.8" || rel.date != "Sat, 21 Nov 2026 09:15:44 UTC" {
		t.Errorf("version %q, date %q", rel.version, rel.date)
	}
	want := map[string]debSum{
		"main/binary-amd64/Packages":    {"2efd6103f013081f8118f4c9f228739bc97bff2e4e1de496f80458c7e72a24ac", 56634892},
		"main/binary-amd64/Packages.xz": {"be3d7d96a040eda0505c1808cccc67f183bbc05dff0842c50f88e6c396557412", 9679304},
	}
	if fmt.Sprint(rel.sha256) != fmt.Sprint(want) {
		t.Errorf("sha256 %v, want %v (the MD5Sum lines are not sha256)", rel.sha256, want)
	}
}

func TestParsePackages(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		name, in string
		want     []string // "package version filename size"
		wantErr  bool
	}{
		{name: "two", in: "Package: runc\nVersion: 1.1.15+ds1-2+b4\nDescription: x\n more\nFilename: pool/r/runc.deb\nSize: 10\nSHA256: " + sum + "\n\nPackage: a\nVersion: 1\nFilename: a.deb\nSHA256: " + sum + "\n",
			want: []string{"a 1 a.deb 0", "runc 1.1.15+ds1-2+b4 pool/r/runc.deb 10"}},
		{name: "blank lines", in: "\n\nPackage: a\nVersion: 1\nFilename: a.deb\nSHA256: " + sum + "\n\n\n", want: []string{"a 1 a.deb 0"}},
		{name: "no sha256", in: "Package: a\nVersion: 1\nFilename: a.deb\n", wantErr: true},
		{name: "short sha256", in: "Package: a\nVersion: 1\nFilename: a.deb\nSHA256: abc\n", wantErr: true},
		{name: "bad size", in: "Package: a\nSize: many\n", wantErr: true},
		{name: "not a field", in: "Package a\n", wantErr: true},
		{name: "empty", in: "", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx, err := parsePackages(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			var got []string
			for _, ps := range idx {
				for _, p := range ps {
					got = append(got, fmt.Sprintf("%s %s %s %d", p.Package, p.Version, p.Filename, p.Size))
				}
			}
			slices.Sort(got)
			if !tt.wantErr && !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParsePackages(f *testing.F) {
	f.Add([]byte("Package: runc\nVersion: 1\nFilename: a.deb\nSize: 3\nSHA256: " + strings.Repeat("0", 64) + "\n\n"))
	f.Add([]byte("Version: 13.8\nSHA256:\n " + strings.Repeat("0", 64) + " 12 main/x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		idx, err := parsePackages(bytes.NewReader(data))
		if err == nil {
			for name, ps := range idx {
				for _, p := range ps {
					if p.Package != name || p.Version == "" || p.Filename == "" || len(p.SHA256) != 64 || p.Size < 0 {
						t.Fatalf("accepted an incomplete package %+v", p)
					}
				}
			}
		}
		for path, s := range parseRelease(data).sha256 {
			if path == "" || s.size < 0 || len(s.hex) != 64 {
				t.Fatalf("release sum %q %+v", path, s)
			}
		}
	})
}

// fakeArchive is a Debian archive served over HTTP: dists/SUITE/InRelease
// (unsigned), main/binary-amd64/Packages.xz and the pool, with packages
// built by dpkg-deb -b.
type fakeArchive struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	gets  map[string]int
}

// newFakeArchive builds one package per entry of pkgs (name → files by
// path, "→target" content making a symlink) and serves them as suite.
func newFakeArchive(t *testing.T, suite string, pkgs map[string]map[string]string) *fakeArchive {
	t.Helper()
	a := &fakeArchive{files: map[string][]byte{}, gets: map[string]int{}}
	var index bytes.Buffer
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		root := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
			t.Fatal(err)
		}
		control := fmt.Sprintf("Package: %s\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: labbake <test@labbake.invalid>\nDescription: test package\n", name)
		if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
			t.Fatal(err)
		}
		for p, content := range pkgs[name] {
			fp := filepath.Join(root, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
				t.Fatal(err)
			}
			if target, ok := strings.CutPrefix(content, "→"); ok {
				if err := os.Symlink(target, fp); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.WriteFile(fp, []byte(content), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		deb := filepath.Join(t.TempDir(), name+".deb")
		cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "-b", root, deb)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1750621723")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -b: %v\n%s", err, out)
		}
		data, err := os.ReadFile(deb)
		if err != nil {
			t.Fatal(err)
		}
		pool := "pool/main/" + name[:1] + "/" + name + "/" + name + "_1.0-1_amd64.deb"
		a.files[pool] = data
		sum := sha256.Sum256(data)
		fmt.Fprintf(&index, "Package: %s\nVersion: 1.0-1\nArchitecture: amd64\nFilename: %s\nSize: %d\nSHA256: %x\nDescription: test package\n\n", name, pool, len(data), sum)
	}
	var xzBuf bytes.Buffer
	zw, err := xz.NewWriter(&xzBuf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(index.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(xzBuf.Bytes())
	a.files["dists/"+suite+"/main/binary-amd64/Packages.xz"] = xzBuf.Bytes()
	a.files["dists/"+suite+"/InRelease"] = fmt.Appendf(nil, "Suite: stable\nCodename: %s\nVersion: 13.8\nDate: Sat, 21 Nov 2026 09:15:44 UTC\nSHA256:\n %x %d main/binary-amd64/Packages.xz\n", suite, sum, xzBuf.Len())
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		p := strings.TrimPrefix(r.URL.Path, "/debian/")
		data, ok := a.files[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		a.gets[p]++
		_, _ = w.Write(data)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// fakeDebian is the lab's two Debian components as small scripts.
func fakeDebian(t *testing.T) *fakeArchive {
	t.Helper()
	cni := map[string]string{"usr/lib/systemd/system/cni-dhcp.service": "[Unit]\n"}
	for _, p := range []string{"bandwidth", "bridge", "host-local", "loopback", "portmap"} {
		cni["usr/lib/cni/"+p] = "#!/bin/sh\necho " + p + "\n"
	}
	return newFakeArchive(t, "trixie", map[string]map[string]string{
		"runc":                        {"usr/sbin/runc": "#!/bin/sh\necho runc\n", "usr/bin/runc": "→../sbin/runc"},
		"containernetworking-plugins": cni,
	})
}

// TestFetchDebian takes runc and the CNI plugins from a local archive
// (packages made by dpkg-deb -b), checks the Results, that a second run is
// served from the cache, and that a .deb not matching its index is refused.
func TestFetchDebian(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb: ", err)
	}
	ctx := context.Background()
	a := fakeDebian(t)
	cacheDir := t.TempDir()
	d := &Debian{Mirror: a.srv.URL + "/debian", Suite: "trixie", Keyring: "-", CacheDir: cacheDir}
	v := DefaultVersions()
	var results []*Result
	for _, c := range DebianComponents(v) {
		r, err := FetchDebian(ctx, d, c, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	runc, cni := results[0], results[1]
	if runc.Component.Version != v.Runc || runc.Debian.Version != "1.0-1" || runc.Debian.Release != "13.8" || runc.Debian.Verified != "none" {
		t.Errorf("runc: %+v, %+v", runc.Component, runc.Debian)
	}
	if got := fileNames(runc); !slices.Equal(got, []string{"runc"}) {
		t.Errorf("runc files %v", got)
	}
	if got := fileNames(cni); !slices.Equal(got, []string{"bandwidth", "bridge", "host-local", "loopback", "portmap"}) {
		t.Errorf("cni files %v (only /usr/lib/cni, sorted)", got)
	}
	if got := cni.Module.Time.Unix(); got != 1750621723 {
		t.Errorf("cni dated %d, want the packaged mtime 1750621723 (SOURCE_DATE_EPOCH)", got)
	}

	// Again, from the cache: only InRelease is fetched anew.
	d2 := &Debian{Mirror: d.Mirror, Suite: "trixie", Keyring: "-", CacheDir: cacheDir}
	if _, err := FetchDebian(ctx, d2, DebianComponents(v)[0], t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for p, n := range a.gets {
		if want := map[bool]int{true: 2, false: 1}[strings.HasSuffix(p, "InRelease")]; n != want {
			t.Errorf("%s fetched %d times, want %d", p, n, want)
		}
	}

	// A package that is not what the index says is refused.
	a.mu.Lock()
	for p := range a.files {
		if strings.HasSuffix(p, ".deb") {
			a.files[p] = append(a.files[p], 0)
		}
	}
	a.mu.Unlock()
	d3 := &Debian{Mirror: d.Mirror, Suite: "trixie", Keyring: "-", CacheDir: t.TempDir()}
	if _, err := FetchDebian(ctx, d3, DebianComponents(v)[0], t.TempDir()); err == nil || !strings.Contains(err.Error(), "the index says") {
		t.Errorf("tampered .deb: %v", err)
	}
	if _, err := d3.Lookup(ctx, "nope"); err == nil {
		t.Error("Lookup(nope) succeeded")
	}
	// Without a keyring, a mirror that is not HTTPS is not trusted.
	d4 := &Debian{Mirror: d.Mirror, Suite: "trixie", Keyring: filepath.Join(t.TempDir(), "none.gpg"), CacheDir: t.TempDir()}
	if _, err := d4.Lookup(ctx, "runc"); err == nil || !strings.Contains(err.Error(), "not HTTPS") {
		t.Errorf("plain HTTP without a keyring: %v", err)
	}
}

func fileNames(r *Result) []string {
	var n []string
	for _, f := range r.Files {
		n = append(n, f.Name)
	}
	return n
}

// fakeCalico is the calico component with a small stand-in binary.
func fakeCalico(t *testing.T) *Result {
	t.Helper()
	p := filepath.Join(t.TempDir(), "standin")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho calicoctl\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := hashFile(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := StandIn("calico", "v3.31.3")
	if err != nil {
		t.Fatal(err)
	}
	return &Result{Component: c, Module: ModuleInfo{Path: c.Module, Version: c.Version}, Files: []File{f}}
}

// TestLayoutDebianCalico lays out runc, the CNI plugins and Calico and
// reads them back the way labbake does: each checksum file through
// source.ParseChecksums and Lookup under the file name the recipes use,
// each archive through source.Extract with the recipes' extract lists (so
// the CNI archive's "./bridge" must match "bridge"); and checks the sums
// with sha256sum -c and the archives' listings with GNU tar.
func TestLayoutDebianCalico(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb: ", err)
	}
	ctx := context.Background()
	a := fakeDebian(t)
	d := &Debian{Mirror: a.srv.URL + "/debian", Suite: "trixie", Keyring: "-", CacheDir: t.TempDir()}
	var results []*Result
	for _, c := range DebianComponents(DefaultVersions()) {
		r, err := FetchDebian(ctx, d, c, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	results = append(results, fakeCalico(t))
	root := t.TempDir()
	pub, err := Layout(root, results)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, p := range pub {
		paths = append(paths, p.Path)
	}
	golden.Check(t, filepath.Join("testdata", "layout-debian-calico.txt"), []byte(strings.Join(paths, "\n")+"\n"))
	again, err := Layout(t.TempDir(), results)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pub) != fmt.Sprint(again) {
		t.Errorf("second layout differs:\n%v\n%v", pub, again)
	}

	store, err := cache.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const (
		gh     = "github.com/"
		runcD  = gh + "opencontainers/runc/releases/download/v1.5.3/"
		cniD   = gh + "containernetworking/plugins/releases/download/v1.10.0/"
		calD   = gh + "projectcalico/calico/releases/download/v3.31.3/"
		cniTgz = "cni-plugins-linux-amd64-v1.10.0.tgz"
	)
	for _, tt := range []struct {
		sums, file string
		extract    []string // nil: not an archive
		want       []string // members extracted
	}{
		{runcD + "runc.sha256sum", "runc.amd64", nil, nil},
		{cniD + cniTgz + ".sha256", cniTgz,
			[]string{"bridge", "host-local", "loopback", "portmap", "bandwidth"},
			[]string{"bandwidth", "bridge", "host-local", "loopback", "portmap"}},
		{calD + "SHA256SUMS", "calicoctl-linux-amd64", nil, nil},
		{calD + "SHA256SUMS", "release-v3.31.3.tgz",
			[]string{"release-v3.31.3/manifests/calico.yaml"},
			[]string{"release-v3.31.3/manifests/calico.yaml"}},
	} {
		sums, err := os.ReadFile(filepath.Join(root, tt.sums))
		if err != nil {
			t.Fatal(err)
		}
		want, err := source.ParseChecksums(sums).Lookup(tt.file)
		if err != nil {
			t.Errorf("%s: %v", tt.sums, err)
			continue
		}
		f, err := os.Open(filepath.Join(root, filepath.Dir(tt.sums), tt.file))
		if err != nil {
			t.Fatal(err)
		}
		dgst, _, err := store.Put(ctx, f, want)
		f.Close()
		if err != nil {
			t.Errorf("%s: the file does not have the sum %s lists: %v", tt.file, tt.sums, err)
			continue
		}
		cmd := exec.Command("sha256sum", "-c", "--ignore-missing", filepath.Base(tt.sums))
		cmd.Dir = filepath.Join(root, filepath.Dir(tt.sums))
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), tt.file+": OK") {
			t.Errorf("sha256sum -c %s: %v\n%s", tt.sums, err, out)
		}
		if tt.extract == nil {
			continue
		}
		var got []string
		err = source.Extract(ctx, store, dgst, tt.extract, t.TempDir(), func(m source.Member, r io.Reader) error {
			if m.Type == tar.TypeReg {
				got = append(got, m.Name)
			}
			return nil
		})
		if err != nil {
			t.Errorf("extracting %v from %s: %v", tt.extract, tt.file, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: extracted %v, want %v", tt.file, got, tt.want)
		}
	}

	// The CNI archive as upstream's: a "./" entry, then ./NAME, root-owned,
	// dated the package.
	out, err := exec.Command("tar", "--numeric-owner", "--utc", "-tvzf", filepath.Join(root, cniD+cniTgz)).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 6 || !strings.HasSuffix(lines[0], " ./") || !strings.HasSuffix(lines[2], " ./bridge") || !strings.Contains(lines[2], "0/0") || !strings.Contains(lines[2], "2025-06-22 19:48") {
		t.Errorf("tar -tv %s:\n%s", cniTgz, out)
	}
	// runc.amd64 is the packaged /usr/sbin/runc, byte for byte.
	served, err := os.ReadFile(filepath.Join(root, runcD+"runc.amd64"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(served)
	if hex.EncodeToString(sum[:]) != results[0].Files[0].SHA256 || string(served) != "#!/bin/sh\necho runc\n" {
		t.Errorf("runc.amd64 is not the packaged runc: %q", served)
	}
}
