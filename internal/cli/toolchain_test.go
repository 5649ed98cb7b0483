package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/source/gobuild"
	"github.com/labbake/labbake/internal/source/gobuild/gobuildtest"
)

// Go inputs on a host whose go is another release: lock fetches the
// toolchain through the module proxy and pins its hash; a bundle carries
// its zip, cache prune keeps it, and an offline, frozen plan without the
// binaries builds them again with it; offline without it, one line says
// what is missing and how to provide it.
func TestGoInputFetchedToolchain(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	release := gobuildDefaultToolchain()
	proxy := t.TempDir()
	gobuildtest.WriteProxy(t, proxy, gobuildtest.Hello()...)
	// The test's toolchain runs the host's go; no checksum database knows
	// it (GONOSUMDB), the lock pins it.
	data := gobuildtest.HostGoToolchain(t, release)
	gobuildtest.WriteToolchain(t, proxy, release, data)
	zipPath := filepath.Join(t.TempDir(), "tc.zip")
	os.WriteFile(zipPath, data, 0o644)
	h1, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	srv := gobuildtest.Serve(t, proxy)
	env := map[string]string{"GOPROXY": srv.URL, "GONOSUMDB": "labbake.test,golang.org/toolchain"}
	wrong := gobuildtest.WrongGo(t, "go1.0.1")
	t.Setenv("PATH", filepath.Dir(wrong)+string(os.PathListSeparator)+os.Getenv("PATH"))
	lab, cacheA := t.TempDir(), t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":            "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": goRecipe,
		"rootfs/etc/hostname": "m\n",
	})
	key := gobuild.ToolchainKey(release)
	unpacked := filepath.Join("go", "toolchain", release+"."+runtime.GOOS+"-"+runtime.GOARCH, "bin", "go")

	stdout, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheA, "lock")
	if code != 0 {
		t.Fatalf("lock: exit %d\n%s%s", code, stdout, stderr)
	}
	lockFile, _ := os.ReadFile(filepath.Join(lab, "labbake.lock"))
	if !strings.Contains(string(lockFile), `"`+key+`": "`+h1+`"`) {
		t.Errorf("labbake.lock does not pin %q to %s:\n%s", key, h1, lockFile)
	}
	if _, err := os.Stat(filepath.Join(cacheA, unpacked)); err != nil {
		t.Errorf("the toolchain is not unpacked in the cache: %v", err)
	}

	bundle := filepath.Join(t.TempDir(), "lab.bundle")
	if stdout, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheA, "bundle", "export", bundle, "--all", "--offline"); code != 0 {
		t.Fatalf("bundle export: exit %d\n%s%s", code, stdout, stderr)
	}
	srv.Close()
	zipBlob := iox.DigestBytes(data)
	imported := func() (string, *cache.Cache) {
		dir := t.TempDir()
		if _, stderr, code := runEnv(t, env, "-C", lab, "--cache", dir, "bundle", "import", bundle); code != 0 {
			t.Fatalf("bundle import: %s", stderr)
		}
		c, err := cache.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok, err := c.Ref(key); err != nil || !ok || d != zipBlob || !c.Has(d) {
			t.Fatalf("the bundle does not carry the toolchain: ref %q → %q %v %v", key, d, ok, err)
		}
		for _, d := range goOutputs(t, lockFile) {
			if err := c.Remove(d); err != nil {
				t.Fatal(err)
			}
		}
		return dir, c
	}

	cacheB, c := imported()
	if stdout, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheB, "cache", "prune"); code != 0 || !c.Has(zipBlob) {
		t.Errorf("cache prune: exit %d, toolchain kept: %v\n%s%s", code, c.Has(zipBlob), stdout, stderr)
	}
	stdout, stderr, code = runEnv(t, env, "-C", lab, "--cache", cacheB, "plan", "master", "--offline", "--frozen", "--json")
	if code != 0 {
		t.Fatalf("offline frozen plan without the binaries: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, d := range goOutputs(t, lockFile) {
		if !strings.Contains(stdout, d) || !c.Has(d) {
			t.Errorf("the offline rebuild did not give %s:\n%s", d, stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(cacheB, unpacked)); err != nil {
		t.Errorf("the bundled toolchain is not unpacked: %v", err)
	}

	cacheC, c := imported()
	if err := c.Remove(zipBlob); err != nil {
		t.Fatal(err)
	}
	_, msg, code := runEnv(t, env, "-C", lab, "--cache", cacheC, "plan", "master", "--offline", "--frozen")
	t.Logf("offline without the toolchain: %s", msg)
	if code != 2 || !strings.Contains(msg, "recipes/master.yaml:4:5: artifacts[0]: go labbake.test/hello@v1.2.3/cmd/hello: ") ||
		!strings.Contains(msg, "needs "+release+", but "+wrong+" is go1.0.1") || !strings.Contains(msg, "install "+release) ||
		!strings.Contains(msg, "labbake fetch") || strings.Count(strings.TrimSpace(msg), "\n") > 1 {
		t.Errorf("offline without the toolchain: exit %d\n%s", code, msg)
	}
}
