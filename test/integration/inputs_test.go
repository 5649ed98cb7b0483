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
disk: {size: 300MiB}
`, filepath.Join(lab, "image"), srv.URL, srv.URL, srv.URL, sum(archive))
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
		"usr/local/bin/etcdctl": 0o100755, "usr/local/share/hello": 0o100644,
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
	_, stderr, code := run("--out", t.TempDir(), "build", "--offline", "master")
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
}
