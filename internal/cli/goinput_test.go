package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/source/gobuild/gobuildtest"
)

// runEnv is run with an environment.
func runEnv(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), args, &stdout, &stderr, func(k string) string { return env[k] })
	if err != nil {
		stderr.WriteString(Message(err))
	}
	return stdout.String(), stderr.String(), ExitCode(err)
}

// goWrapper puts a go command first on PATH that logs each invocation's
// arguments to the returned file and runs the real go; with noNet, in a
// network namespace of its own (unshare -n): it cannot reach anything.
func goWrapper(t *testing.T, noNet bool) (log string) {
	t.Helper()
	real, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	log = filepath.Join(dir, "invocations")
	prefix := ""
	if noNet {
		if err := exec.Command("unshare", "-n", "true").Run(); err != nil {
			t.Skipf("unshare -n: %v", err)
		}
		prefix = "unshare -n "
	}
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nexec %s%s \"$@\"\n", log, prefix, real)
	if err := os.WriteFile(filepath.Join(dir, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

// goBuilds counts the go build invocations logged.
func goBuilds(t *testing.T, log string) int {
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(regexp.MustCompile(`(?m)^build `).FindAll(b, -1))
}

const goRecipe = `base: {dir: rootfs}
disk: {size: 300MiB, boot: []}
artifacts:
  - go:
      module: labbake.test/hello
      version: v1.2.3
      packages: [cmd/hello]
      ldflags: ["-s -w", "-X labbake.test/hello/version.Version=v1.2.3"]
    dest: /usr/local/bin/hello
  - go: {module: labbake.test/hello, version: v1.2.3, packages: [cmd/hello, cmd/bye]}
    dest: /opt/hello/
    mode: "0750"
`

// imageSHA reads the image digest from a build's manifest.
func imageSHA(t *testing.T, out string) (sha string, rootOffset int64) {
	t.Helper()
	var m struct {
		Output     struct{ SHA256 string }
		Partitions []struct{ Offset int64 }
	}
	b, err := os.ReadFile(filepath.Join(out, "master.manifest.json"))
	if err != nil || json.Unmarshal(b, &m) != nil {
		t.Fatalf("manifest: %v\n%s", err, b)
	}
	return m.Output.SHA256, m.Partitions[len(m.Partitions)-1].Offset
}

// A go input end to end, with a module proxy of the test's own (two
// modules) and the real go command: lock pins it; builds with other caches
// give the same image; the second bake runs no go build; a bundle carries
// it into an empty cache where an offline, frozen build gives the same
// bytes, from the bundled binary and, without it, from the bundled modules
// under unshare -n; a tampered module zip is refused; a lock that pins
// another binary or none is refused.
func TestGoInput(t *testing.T) {
	requireTool(t, "mke2fs")
	requireTool(t, "debugfs")
	proxy := t.TempDir()
	gobuildtest.WriteProxy(t, proxy, gobuildtest.Hello()...)
	srv := gobuildtest.Serve(t, proxy)
	env := map[string]string{"GOPROXY": srv.URL, "GONOSUMDB": "labbake.test"}
	lab, cacheA := t.TempDir(), t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":            "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": goRecipe,
		"rootfs/etc/hostname": "m\n",
	})
	log := goWrapper(t, false)

	// lock: builds and pins both inputs.
	stdout, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheA, "lock")
	if code != 0 {
		t.Fatalf("lock: exit %d\n%s%s", code, stdout, stderr)
	}
	lockFile, _ := os.ReadFile(filepath.Join(lab, "labbake.lock"))
	tc := gobuildDefaultToolchain()
	for _, want := range []string{
		`"go labbake.test/hello@v1.2.3 cmd/hello ` + tc + ` linux/amd64 sha256:`,
		`"go labbake.test/hello@v1.2.3 cmd/bye,cmd/hello ` + tc + ` linux/amd64 sha256:`,
		`"gosum labbake.test/hello@v1.2.3 cmd/hello ` + tc + `": "sha256:`,
		`"gosum labbake.test/hello@v1.2.3 cmd/bye,cmd/hello ` + tc + `": "sha256:`,
	} {
		if !strings.Contains(string(lockFile), want) {
			t.Errorf("labbake.lock lacks %q:\n%s", want, lockFile)
		}
	}
	if n := goBuilds(t, log); n != 2 {
		t.Errorf("lock ran go build %d times, want 2", n)
	}

	// plan: kind go, named by module@version/package, the binary's digest.
	stdout, stderr, code = runEnv(t, env, "-C", lab, "--cache", cacheA, "plan", "master", "--frozen", "--json")
	var p struct {
		Digest string
		Inputs []struct{ Field, Kind, Name, Digest, GoSum string }
	}
	if err := json.Unmarshal([]byte(stdout), &p); code != 0 || err != nil {
		t.Fatalf("plan: exit %d %v\n%s%s", code, err, stdout, stderr)
	}
	var hello string
	for _, in := range p.Inputs {
		if in.Field == "artifacts[0]" {
			hello = in.Digest
			if in.Kind != "go" || in.Name != "labbake.test/hello@v1.2.3/cmd/hello" || !strings.Contains(string(lockFile), in.Digest) {
				t.Errorf("plan input %+v", in)
			}
		}
	}
	if hello == "" {
		t.Fatalf("no artifacts[0] in the plan:\n%s", stdout)
	}

	// Two builds, the second with an empty cache: the same image; the
	// first runs no go build (lock built it).
	build := func(cacheDir string, extra ...string) (string, string, int) {
		out := t.TempDir()
		args := append([]string{"-C", lab, "--cache", cacheDir, "--out", out, "build", "master", "--keep-raw"}, extra...)
		stdout, stderr, code := runEnv(t, env, args...)
		if code != 0 {
			return "", stdout + stderr, code
		}
		sha, _ := imageSHA(t, out)
		return out, sha, 0
	}
	before := goBuilds(t, log)
	outA, shaA, code := build(cacheA, "--frozen")
	if code != 0 {
		t.Fatalf("build: %s", shaA)
	}
	if n := goBuilds(t, log) - before; n != 0 {
		t.Errorf("the second bake ran go build %d times", n)
	}
	cacheB := t.TempDir()
	before = goBuilds(t, log)
	_, shaB, code := build(cacheB, "--frozen")
	if code != 0 {
		t.Fatalf("build with another cache: %s", shaB)
	}
	if n := goBuilds(t, log) - before; n != 2 {
		t.Errorf("a build with an empty cache ran go build %d times, want 2", n)
	}
	if shaA != shaB {
		t.Errorf("two caches, two images: %s, %s", shaA, shaB)
	}

	// The binaries in the image, read back with debugfs, run.
	_, off := imageSHA(t, outA)
	dev := fmt.Sprintf("%s?offset=%d", filepath.Join(outA, "master.raw"), off)
	dir := t.TempDir()
	script := fmt.Sprintf("dump /usr/local/bin/hello %[1]s/hello\ndump /opt/hello/bye %[1]s/bye\nstat /opt/hello/bye\n", dir)
	os.WriteFile(filepath.Join(dir, "script"), []byte(script), 0o644)
	dbg, err := exec.Command("debugfs", "-f", filepath.Join(dir, "script"), dev).CombinedOutput()
	if err != nil || !strings.Contains(string(dbg), "Mode:  0750") {
		t.Fatalf("debugfs: %v\n%s", err, dbg)
	}
	for name, want := range map[string]string{"hello": "hello, lab v1.2.3\n", "bye": "hello, bye\n"} {
		exe := filepath.Join(dir, name)
		os.Chmod(exe, 0o755)
		if got, err := exec.Command(exe).Output(); err != nil || string(got) != want {
			t.Errorf("%s in the image says %q, %v", name, got, err)
		}
	}

	// A bundle into an empty cache; the proxy gone; go without a network.
	bundle := filepath.Join(t.TempDir(), "lab.bundle.zst")
	if stdout, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheA, "bundle", "export", bundle, "--all", "--offline"); code != 0 {
		t.Fatalf("bundle export: exit %d\n%s%s", code, stdout, stderr)
	}
	srv.Close()
	log = goWrapper(t, true)
	cacheC := t.TempDir()
	if _, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheC, "bundle", "import", bundle); code != 0 {
		t.Fatalf("bundle import: %s", stderr)
	}
	_, shaC, code := build(cacheC, "--offline", "--frozen")
	if code != 0 || shaC != shaA || goBuilds(t, log) != 0 {
		t.Errorf("offline frozen build from the bundle: exit %d, %s (want %s), %d go builds", code, shaC, shaA, goBuilds(t, log))
	}
	// Without the binaries: built again from the bundle's modules.
	c, err := cache.Open(cacheC, nil)
	if err != nil {
		t.Fatal(err)
	}
	// cache prune keeps the go inputs' module files (no ref names them).
	if _, _, err := c.Put(context.Background(), strings.NewReader("junk"), ""); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheC, "cache", "prune"); code != 0 || !strings.Contains(stdout, "removed 1 blobs") {
		t.Errorf("cache prune: exit %d\n%s%s", code, stdout, stderr)
	}
	outputs := goOutputs(t, lockFile)
	for _, d := range outputs {
		if err := c.Remove(d); err != nil {
			t.Fatal(err)
		}
	}
	_, shaD, code := build(cacheC, "--offline", "--frozen")
	if code != 0 || shaD != shaA || goBuilds(t, log) != 2 {
		t.Errorf("offline frozen build from the bundle's modules under unshare -n: exit %d, %s (want %s), %d go builds", code, shaD, shaA, goBuilds(t, log))
	}

	// A tampered module zip in the cache: refused, naming the module.
	for _, d := range outputs {
		c.Remove(d)
	}
	zips := moduleZips(t, c, "labbake.test/greet/@v/v1.0.0.zip")
	for _, z := range zips {
		p, _ := c.Path(z)
		os.Chmod(p, 0o644)
		os.WriteFile(p, gobuildtest.Zip(t, gobuildtest.Module{Path: "labbake.test/greet", Version: "v1.0.0", GoMod: "module labbake.test/greet\n",
			Files: map[string]string{"greet.go": "package greet\n\nfunc Hello(string) string { return \"pwned\" }\n"}}), 0o644)
	}
	before = goBuilds(t, log)
	_, msg, code := build(cacheC, "--offline", "--frozen")
	// (A cache that no longer holds what it stored is the machine's
	// problem, not the recipe's: exit 1.)
	if code != 1 || !strings.Contains(msg, "artifacts[0]: go labbake.test/hello@v1.2.3/cmd/hello: module labbake.test/greet@v1.0.0: ") || !strings.Contains(msg, "corrupt") || goBuilds(t, log) != before {
		t.Errorf("tampered zip: exit %d, %d go builds\n%s", code, goBuilds(t, log)-before, msg)
	}

	// A lock that pins another binary: refused, naming the input and both
	// digests.
	other := "sha256:" + strings.Repeat("0", 64)
	os.WriteFile(filepath.Join(lab, "labbake.lock"), bytes.Replace(lockFile, []byte(hello), []byte(other), 1), 0o644)
	_, msg, code = build(cacheA, "--frozen")
	t.Logf("lock pinning another binary: %s", msg)
	if code != 2 || !strings.Contains(msg, "recipes/master.yaml:4:5: artifacts[0]: go labbake.test/hello@v1.2.3/cmd/hello") ||
		!strings.Contains(msg, hello) || !strings.Contains(msg, other) {
		t.Errorf("lock pinning another binary: exit %d\n%s", code, msg)
	}
	os.WriteFile(filepath.Join(lab, "labbake.lock"), lockFile, 0o644)

	// An input the lock does not pin: --frozen refuses it; a toolchain
	// that is not the host's is named in one positioned line.
	writeFiles(t, lab, map[string]string{"recipes/master.yaml": strings.Replace(goRecipe, `"-s -w", `, "", 1)})
	_, msg, code = build(cacheA, "--frozen")
	if code != 2 || !strings.Contains(msg, "is not in labbake.lock") || !strings.Contains(msg, "recipes/master.yaml:4:5: artifacts[0]") {
		t.Errorf("unpinned go input under --frozen: exit %d\n%s", code, msg)
	}
	writeFiles(t, lab, map[string]string{"recipes/master.yaml": strings.Replace(goRecipe, "      packages: [cmd/hello]\n", "      packages: [cmd/hello]\n      toolchain: go1.19.13\n", 1)})
	_, msg, code = build(cacheA)
	t.Logf("another toolchain: %s", msg)
	if code != 2 || !regexp.MustCompile(`(?m)^.*recipes/master.yaml:4:5: artifacts\[0\]: go labbake.test/hello@v1.2.3/cmd/hello: .*needs go1.19.13, but .* is go1`).MatchString(msg) {
		t.Errorf("another toolchain: exit %d\n%s", code, msg)
	}
}

func gobuildDefaultToolchain() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// goOutputs are the digests the lock pins for go outputs.
func goOutputs(t *testing.T, lock []byte) []string {
	var l struct{ Inputs map[string]string }
	if err := json.Unmarshal(lock, &l); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k, d := range l.Inputs {
		if strings.HasPrefix(k, "go ") {
			out = append(out, d)
		}
	}
	return out
}

// moduleZips finds the blobs of a module file through the module indexes
// the cache holds.
func moduleZips(t *testing.T, c *cache.Cache, path string) []string {
	refs, err := c.Refs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k, d := range refs {
		if !strings.HasPrefix(k, "gomodules ") {
			continue
		}
		p, err := c.Path(d)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		for _, line := range strings.Split(string(b), "\n") {
			if dg, pth, ok := strings.Cut(line, " "); ok && pth == path {
				out = append(out, dg)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no module index names %s", path)
	}
	return out
}
