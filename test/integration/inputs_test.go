package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tarGz(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		if err := tw.WriteHeader(e.h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func regEntry(name, content string, mode int64) tarEntry {
	return tarEntry{&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)), ModTime: time.Unix(epoch-10, 0)}, content}
}

// writeOCILayout writes a one-layer OCI image layout tagged tag into dir.
func writeOCILayout(t *testing.T, dir, tag string, layer []byte) {
	t.Helper()
	blob := func(b []byte) string {
		d := sum(b)
		p := filepath.Join(dir, "blobs", "sha256", d)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return "sha256:" + d
	}
	uncompressed := func() string {
		zr, err := gzip.NewReader(bytes.NewReader(layer))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(zr); err != nil {
			t.Fatal(err)
		}
		return "sha256:" + sum(b.Bytes())
	}()
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{uncompressed}},
	})
	layerDigest, configDigest := blob(layer), blob(config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": len(config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layerDigest, "size": len(layer)}},
	})
	manifestDigest := blob(manifest)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest, "size": len(manifest),
			"annotations": map[string]string{"org.opencontainers.image.ref.name": tag},
		}},
	})
	mkfile(t, dir, "index.json", string(index))
	mkfile(t, dir, "oci-layout", `{"imageLayoutVersion": "1.0.0"}`)
}

// TestRemoteInputs runs the air-gapped workflow on local stand-ins: an OCI
// layout base, URL and archive artifacts from an HTTP server with a
// checksum file. lock, fetch, then offline builds with the server gone; a
// missing blob is named with its recipe position; a bundle carries
// everything into an empty cache and rebuilds the same bytes; --frozen
// refuses what the lock does not pin; a corrupt blob is caught.
func TestRemoteInputs(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs"} {
		tool(t, name)
	}
	tool := "#!/bin/sh\necho tool\n"
	archive := tarGz(t, []tarEntry{
		regEntry("etcd-v1/etcd", "etcd binary\n", 0o755),
		regEntry("etcd-v1/etcdctl", "etcdctl binary\n", 0o755),
		regEntry("etcd-v1/README.md", "readme\n", 0o644),
	})
	var requests atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/bin/tool", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(tool)) })
	mux.HandleFunc("/bin/tool.sha256", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s  tool\n", sum([]byte(tool))) })
	mux.HandleFunc("/bin/other", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("other\n")) })
	mux.HandleFunc("/bin/other.sha256", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s  other\n", sum([]byte("other\n"))) })
	mux.HandleFunc("/etcd.tar.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(archive) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		mux.ServeHTTP(w, r)
	}))
	defer srv.Close()

	lab := t.TempDir()
	writeOCILayout(t, filepath.Join(lab, "image"), "v1", tarGz(t, []tarEntry{
		{&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: time.Unix(epoch-10, 0)}, ""},
		regEntry("etc/os-release", "NAME=test\n", 0o644),
	}))
	mkfile(t, lab, "lab.yaml", "name: remote\nepoch: 1700000000\nnodes:\n  - {name: master, role: master, ip: 172.18.0.10}\n")
	mkfile(t, lab, "tools/hello", "hello\n")
	recipe := fmt.Sprintf(`base: {oci: "oci:%s:v1"}
artifacts:
  - {url: %s/bin/tool, sha256: {url: %s/bin/tool.sha256}, dest: /usr/local/bin/tool}
  - {archive: %s/etcd.tar.gz, sha256: "%s", extract: [etcd-v1/etcd, etcd-v1/etcdctl], dest: /usr/local/bin/}
  - {file: tools/hello, dest: /usr/local/share/hello, mode: "0644"}
  - {image: "oci:%s:v1", path: /etc/os-release, dest: /etc/copied-os-release, mode: "0600"}
disk: {size: 300MiB, boot: []}
`, filepath.Join(lab, "image"), srv.URL, srv.URL, srv.URL, sum(archive), filepath.Join(lab, "image"))
	mkfile(t, lab, "recipes/master.yaml", recipe)
	cache := t.TempDir()
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return labbake(t, nil, append([]string{"-C", lab, "--cache", cache}, args...)...)
	}

	if _, stderr, code := run("lock"); code != 0 {
		t.Fatalf("lock: exit %d\n%s", code, stderr)
	}
	lockText, err := os.ReadFile(filepath.Join(lab, "labbake.lock"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"checksum " + srv.URL + "/bin/tool.sha256 tool", "oci oci:"} {
		if !strings.Contains(string(lockText), key) {
			t.Errorf("labbake.lock lacks %q:\n%s", key, lockText)
		}
	}
	t.Logf("lock:\n%s", lockText)
	// A digest that does not match: exit 2 naming the input, nothing cached or written.
	mkfile(t, lab, "recipes/master.yaml", strings.Replace(recipe, sum(archive), sum([]byte("not it")), 1))
	blobsBefore, _ := os.ReadDir(filepath.Join(cache, "blobs", "sha256"))
	badOut := t.TempDir()
	_, stderr, code := run("--out", badOut, "build", "master")
	if code != 2 || !strings.Contains(stderr, "recipes/master.yaml:4:5: artifacts[1]") || !strings.Contains(stderr, "digest mismatch") {
		t.Errorf("build with a wrong sha256: exit %d, want 2 naming artifacts[1] and the mismatch:\n%s", code, stderr)
	}
	if entries, _ := os.ReadDir(badOut); len(entries) > 1 { // only the role's lock file may be there
		t.Errorf("a failed build wrote %d entries to its output dir", len(entries))
	}
	if blobsAfter, _ := os.ReadDir(filepath.Join(cache, "blobs", "sha256")); len(blobsAfter) != len(blobsBefore) {
		t.Errorf("the failed build added %d blobs to the cache", len(blobsAfter)-len(blobsBefore))
	}
	mkfile(t, lab, "recipes/master.yaml", recipe)

	if _, stderr, code := run("fetch", "--all"); code != 0 {
		t.Fatalf("fetch: exit %d\n%s", code, stderr)
	}

	// Offline: the server stays up but must see no request.
	before := requests.Load()
	out := t.TempDir()
	if _, stderr, code := run("--out", out, "build", "--offline", "--frozen", "--all", "--keep-raw"); code != 0 {
		t.Fatalf("offline build: exit %d\n%s", code, stderr)
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("the offline build made %d requests", n)
	}
	image := sha256File(t, filepath.Join(out, "master.qcow2"))
	m := readManifest(t, filepath.Join(out, "master.manifest.json"))
	got := readImage(t, filepath.Join(out, "master.raw"), m.Partitions[2].Offset)
	for p, mode := range map[string]uint32{
		"etc/os-release": 0o100644, "usr/local/bin/tool": 0o100755, "usr/local/bin/etcd": 0o100755,
		"usr/local/bin/etcdctl": 0o100755, "usr/local/share/hello": 0o100644, "etc/copied-os-release": 0o100600,
	} {
		if got[p] == nil || got[p].Mode != mode {
			t.Errorf("%s: %+v, want mode %o", p, got[p], mode)
		}
	}
	if got["usr/local/bin/README.md"] != nil {
		t.Error("an archive member that extract does not name was installed")
	}
	contents := readFiles(t, filepath.Join(out, "master.raw"), m.Partitions[2].Offset, []string{"usr/local/bin/tool", "usr/local/bin/etcd"})
	if string(contents["usr/local/bin/tool"]) != tool || string(contents["usr/local/bin/etcd"]) != "etcd binary\n" {
		t.Errorf("artifact contents: %q", contents)
	}

	// A bundle made now carries everything into an empty cache.
	bundle := filepath.Join(t.TempDir(), "lab.bundle.zst")
	if _, stderr, code := run("bundle", "export", bundle, "--all", "--offline"); code != 0 {
		t.Fatalf("bundle export: exit %d\n%s", code, stderr)
	}
	cache2 := t.TempDir()
	if _, stderr, code := labbake(t, nil, "-C", lab, "--cache", cache2, "bundle", "import", bundle); code != 0 {
		t.Fatalf("bundle import: exit %d\n%s", code, stderr)
	}
	out2 := t.TempDir()
	if _, stderr, code := labbake(t, nil, "-C", lab, "--cache", cache2, "--out", out2, "build", "--offline", "--all"); code != 0 {
		t.Fatalf("offline build from the bundle: exit %d\n%s", code, stderr)
	}
	if got := sha256File(t, filepath.Join(out2, "master.qcow2")); got != image {
		t.Errorf("build from the bundle %s differs from the online-fetched build %s", got, image)
	}

	// One blob gone: the offline build names exactly that input.
	toolBlob := filepath.Join(cache, "blobs", "sha256", sum([]byte(tool)))
	os.Chmod(toolBlob, 0o644)
	if err := os.Remove(toolBlob); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = run("--out", t.TempDir(), "build", "--offline", "master")
	if code != 2 || !strings.Contains(stderr, "recipes/master.yaml:3:5: artifacts[0]") || strings.Contains(stderr, "artifacts[1]") {
		t.Errorf("offline build with a missing blob: exit %d, want 2 naming only artifacts[0]:\n%s", code, stderr)
	}

	// --frozen refuses an input the lock does not pin.
	unlocked := fmt.Sprintf("  - {url: %s/bin/other, sha256: {url: %s/bin/other.sha256}, dest: /usr/local/bin/other}\ndisk:", srv.URL, srv.URL)
	mkfile(t, lab, "recipes/master.yaml", strings.Replace(recipe, "disk:", unlocked, 1))
	_, stderr, code = run("--out", t.TempDir(), "build", "--frozen", "master")
	if code != 2 || !strings.Contains(stderr, "not in labbake.lock") {
		t.Errorf("frozen build with an unlocked input: exit %d\n%s", code, stderr)
	}

	// A flipped byte in a cached blob is caught by verify and by the build.
	archiveBlob := filepath.Join(cache2, "blobs", "sha256", sum(archive))
	b, err := os.ReadFile(archiveBlob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	os.Chmod(archiveBlob, 0o644)
	if err := os.WriteFile(archiveBlob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if stdout, _, code := labbake(t, nil, "-C", lab, "--cache", cache2, "cache", "verify"); code == 0 || !strings.Contains(stdout, sum(archive)) {
		t.Errorf("cache verify: exit %d, want it to name %s:\n%s", code, sum(archive), stdout)
	}
	// Back to the locked recipe, whose inputs the server still has.
	mkfile(t, lab, "recipes/master.yaml", recipe)
	corruptedCacheTail(t, lab, cache2, sum(archive))
}

// corruptedCacheTail continues TestRemoteInputs' corrupted cache: offline
// the build reports the blob; online it fetches it again and succeeds.
func corruptedCacheTail(t *testing.T, lab, cache, digest string) {
	t.Helper()
	_, stderr, code := labbake(t, nil, "-C", lab, "--cache", cache, "--out", t.TempDir(), "build", "--offline", "master")
	if code == 0 || !strings.Contains(stderr, digest) || !strings.Contains(stderr, "corrupt") {
		t.Errorf("offline build on a corrupt blob: exit %d, want an error naming %s:\n%s", code, digest, stderr)
	}
	if _, stderr, code := labbake(t, nil, "-C", lab, "--cache", cache, "--out", t.TempDir(), "build", "master"); code != 0 {
		t.Errorf("online build on a corrupt blob: exit %d, want it fetched again:\n%s", code, stderr)
	}
	if stdout, _, code := labbake(t, nil, "-C", lab, "--cache", cache, "cache", "verify"); code != 0 {
		t.Errorf("cache verify after the refetch: exit %d\n%s", code, stdout)
	}
}

// buildBinary builds labbake for tests that need real processes.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "labbake")
	if out, err := exec.Command("go", "build", "-tags", buildTags, "-o", bin, "../../cmd/labbake").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestConcurrentRoles builds four roles at once, as four processes sharing
// one cache, and wants the same images as serial builds and a clean cache.
// With unshare available, the concurrent builds run with no network at all.
func TestConcurrentRoles(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs"} {
		tool(t, name)
	}
	bin := buildBinary(t)
	archive := tarGz(t, []tarEntry{regEntry("pkg/bin/x", "x\n", 0o755)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(archive) }))
	defer srv.Close()
	lab := t.TempDir()
	writeOCILayout(t, filepath.Join(lab, "image"), "v1", tarGz(t, []tarEntry{regEntry("etc/base", "base\n", 0o644)}))
	roles := []string{"alpha", "beta", "gamma", "delta"}
	var nodes strings.Builder
	for i, r := range roles {
		fmt.Fprintf(&nodes, "  - {name: %s, role: %s, ip: 172.18.0.%d}\n", r, r, 10+i)
		mkfile(t, lab, "recipes/"+r+".yaml", fmt.Sprintf(`base: {oci: "oci:%s:v1"}
artifacts:
  - {archive: %s/pkg.tar.gz, sha256: "%s", extract: [pkg/bin/x], dest: /usr/local/bin/x}
files:
  - {path: /etc/role, content: "{{ .role }}\n"}
disk: {size: 300MiB, boot: []}
`, filepath.Join(lab, "image"), srv.URL, sum(archive)))
	}
	mkfile(t, lab, "lab.yaml", "name: four\nepoch: 1700000000\nnodes:\n"+nodes.String())

	serialCache, serialOut := t.TempDir(), t.TempDir()
	if _, stderr, code := labbake(t, nil, "-C", lab, "--cache", serialCache, "--out", serialOut, "build", "--all"); code != 0 {
		t.Fatalf("serial build: exit %d\n%s", code, stderr)
	}
	cache, out := t.TempDir(), t.TempDir()
	if _, stderr, code := labbake(t, nil, "-C", lab, "--cache", cache, "fetch", "--all"); code != 0 {
		t.Fatalf("fetch: exit %d\n%s", code, stderr)
	}
	// Cut the network for the builds when unshare can (root here).
	prefix := []string{}
	if p, err := exec.LookPath("unshare"); err == nil && os.Geteuid() == 0 {
		prefix = []string{p, "-n", "--"}
	}
	errs := make(chan error, len(roles))
	for _, r := range roles {
		args := append(append([]string{}, prefix...), bin, "-C", lab, "--cache", cache, "--out", out, "build", "--offline", r)
		cmd := exec.Command(args[0], args[1:]...)
		go func() {
			b, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("%v: %v\n%s", args, err, b)
			}
			errs <- err
		}()
	}
	for range roles {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, r := range roles {
		a, b := sha256File(t, filepath.Join(serialOut, r+".qcow2")), sha256File(t, filepath.Join(out, r+".qcow2"))
		if a != b {
			t.Errorf("%s: concurrent build %s differs from the serial one %s", r, b, a)
		}
	}
	if stdout, _, code := labbake(t, nil, "-C", lab, "--cache", cache, "cache", "verify"); code != 0 {
		t.Errorf("cache verify after concurrent builds: exit %d\n%s", code, stdout)
	}
}

// TestDebianBase bakes a role from a debian: base made by the real
// mmdebstrap, then bakes again: the second build takes the base from the
// cache (mmdebstrap must not run) and gives the same image.
func TestDebianBase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mmdebstrap (about a minute)")
	}
	for _, name := range []string{"mke2fs", "debugfs", "mmdebstrap"} {
		tool(t, name)
	}
	real, _ := exec.LookPath("mmdebstrap")
	wrap := t.TempDir()
	count := filepath.Join(wrap, "runs")
	mkfile(t, wrap, "mmdebstrap", fmt.Sprintf("#!/bin/sh\necho run >> %s\nexec %s \"$@\"\n", count, real))
	os.Chmod(filepath.Join(wrap, "mmdebstrap"), 0o755)
	t.Setenv("PATH", wrap+":"+os.Getenv("PATH"))

	lab := t.TempDir()
	mkfile(t, lab, "lab.yaml", "name: deb\nepoch: 1700000000\nnodes:\n  - {name: master, role: master, ip: 172.18.0.10}\n")
	mkfile(t, lab, "recipes/master.yaml", `base:
  debian: {suite: bookworm, variant: minbase, packages: [less, netbase]}
disk: {size: 1GiB, boot: []}
`)
	cache := t.TempDir()
	var sums []string
	for i := range 2 {
		out := t.TempDir()
		if _, stderr, code := labbake(t, nil, "-C", lab, "--cache", cache, "--out", out, "build", "master", "--keep-raw"); code != 0 {
			t.Fatalf("build %d: exit %d\n%s", i+1, code, stderr)
		}
		sums = append(sums, sha256File(t, filepath.Join(out, "master.qcow2")))
		if i == 0 {
			m := readManifest(t, filepath.Join(out, "master.manifest.json"))
			got := readImage(t, filepath.Join(out, "master.raw"), m.Partitions[2].Offset)
			if got["usr/bin/less"] == nil || got["etc/services"] == nil {
				t.Error("the packages are not in the image")
			}
			// The SBOM lists the packages mmdebstrap installed, from the
			// image's dpkg database, and the base with its digest.
			sbom, err := os.ReadFile(filepath.Join(out, "master.spdx.json"))
			for _, want := range []string{`"pkg:deb/debian/less@`, `"pkg:deb/debian/netbase@`, `"pkg:deb/debian/libc6@`, `"SPDXID": "SPDXRef-input-base"`, strings.TrimPrefix(m.Inputs[0].Digest, "sha256:")} {
				if err != nil || !strings.Contains(string(sbom), want) {
					t.Errorf("master.spdx.json lacks %s: %v", want, err)
				}
			}
			for p := range got {
				if strings.HasPrefix(p, "etc/ssh/ssh_host_") {
					t.Errorf("%s baked into the image", p)
				}
			}
		}
	}
	runs, _ := os.ReadFile(count)
	if n := strings.Count(string(runs), "run"); n != 1 {
		t.Errorf("mmdebstrap ran %d times, want once", n)
	}
	if sums[0] != sums[1] {
		t.Errorf("second build %s differs from the first %s", sums[1], sums[0])
	}
}
