package ctrstore

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/test/upstream"
)

// ctrd is a containerd started by a test on a root the test wrote.
type ctrd struct {
	t          *testing.T
	ctr        string
	crictl     string
	sock       string
	root       string
	env        []string
	log        string
	cmd        *exec.Cmd
	registries string
}

// TestContainerd writes the store of three images into a containerd root,
// starts containerd 2.x with its CRI plugin on it, and checks what
// containerd and the CRI say: the images and their content are there and
// complete, a pod and a container run from them with no registry
// reachable (the CRI unpacks them), and garbage collection keeps them.
func TestContainerd(t *testing.T) {
	containerd := tool(t, "containerd", "containerd")
	shim := tool(t, "containerd", "containerd-shim-runc-v2")
	runc := tool(t, "", "runc")
	if r := os.Getenv("LABBAKE_TEST_RUNC"); r != "" {
		runc = r
	}
	c := &ctrd{t: t, ctr: tool(t, "containerd", "ctr"), crictl: tool(t, "crictl", "crictl")}
	if os.Getuid() != 0 {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatal("containerd needs root")
		}
		t.Skip("containerd needs root")
	}
	dir := t.TempDir()
	hello := buildHello(t, filepath.Join(dir, "bin"))

	pause := layoutImage(t, filepath.Join(dir, "pause"), "registry.labbake.test/pause:3.10.2", true, upstream.ImageSpec{
		Registry: "registry.labbake.test", Repository: "pause", Tag: "3.10.2", Created: epoch, Entrypoint: []string{"/hello", "-pause"},
		Files: []upstream.ImageFile{{Path: "/hello", Src: hello, Mode: 0o755}},
	})
	app := layoutImage(t, filepath.Join(dir, "app"), "registry.labbake.test/tools/hello:v1", false, upstream.ImageSpec{
		Registry: "registry.labbake.test", Repository: "tools/hello", Tag: "v1", Created: epoch, Entrypoint: []string{"/hello"}, Cmd: []string{"world"},
		Files: []upstream.ImageFile{{Path: "/hello", Src: hello, Mode: 0o755}, {Path: "/etc/app", Data: []byte("app\n"), Mode: 0o644}},
	})
	junk := layoutImage(t, filepath.Join(dir, "junk"), "registry.labbake.test/junk:v1", false, upstream.ImageSpec{
		Registry: "registry.labbake.test", Repository: "junk", Tag: "v1", Created: epoch,
		Files: []upstream.ImageFile{{Path: "/junk", Data: []byte("to be collected\n"), Mode: 0o644}},
	})
	images := []Image{pause, app, junk}

	tr := tree.New(epoch)
	s := &Store{Images: images}
	res, err := s.Add(tr, filepath.Join(dir, "work"))
	if err != nil {
		t.Fatal(err)
	}
	c.root = filepath.Join(dir, "root")
	stage(t, tr, DefaultRoot, c.root)
	t.Logf("store: %d blobs, %d bytes, meta.db %d bytes", res.Blobs, res.BlobBytes, res.MetaDB)

	c.start(containerd, dir, []string{filepath.Dir(shim), filepath.Dir(runc)})

	// ctr sees every record, every blob, and each image complete.
	ls := c.run(c.ctr, "images", "ls")
	for _, img := range images {
		recs, err := img.records()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !hasRow(ls, r.name, img.Manifest.Digest) {
				t.Errorf("ctr images ls lacks %s at %s:\n%s", r.name, img.Manifest.Digest, ls)
			}
		}
	}
	content := c.run(c.ctr, "content", "ls", "-q")
	for _, img := range images {
		for _, b := range img.blobs() {
			if !strings.Contains(content, b.Digest) {
				t.Errorf("ctr content ls lacks %s of %s", b.Digest, img.Ref)
			}
		}
	}
	check := c.run(c.ctr, "images", "check")
	for _, img := range images {
		if !hasRow(check, img.Ref, "complete") {
			t.Errorf("ctr images check does not call %s complete:\n%s", img.Ref, check)
		}
	}

	// The CRI lists them (repository, tag, image ID), pinned as asked.
	crImages := c.run(c.crictl, "images", "--no-trunc")
	for _, img := range images {
		repo, tag, _ := strings.Cut(img.Ref[strings.LastIndex(img.Ref, "/")+1:], ":")
		repo = img.Ref[:strings.LastIndex(img.Ref, "/")+1] + repo
		if !hasRow(crImages, repo, tag, img.Config.Digest) {
			t.Errorf("crictl images lacks %s %s %s:\n%s", repo, tag, img.Config.Digest, crImages)
		}
	}
	var status struct {
		Status struct {
			Pinned      bool     `json:"pinned"`
			RepoDigests []string `json:"repoDigests"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(c.run(c.crictl, "inspecti", pause.Ref)), &status); err != nil {
		t.Fatal(err)
	}
	if !status.Status.Pinned {
		t.Errorf("crictl inspecti %s: not pinned", pause.Ref)
	}
	if want := "registry.labbake.test/pause@" + pause.Manifest.Digest; len(status.Status.RepoDigests) != 1 || status.Status.RepoDigests[0] != want {
		t.Errorf("crictl inspecti %s: repo digests %v, want [%s]", pause.Ref, status.Status.RepoDigests, want)
	}

	// A pod (its sandbox from the preloaded pause image) and a container
	// from the other image run: the CRI unpacks both, nothing is pulled.
	c.runPod(dir, app.Ref)

	// Garbage collection: removing the junk image collects its blobs and
	// keeps every blob of the others.
	recs, _ := junk.records()
	args := []string{"images", "rm", "--sync"}
	for _, r := range recs {
		args = append(args, r.name)
	}
	c.run(c.ctr, args...)
	content = c.run(c.ctr, "content", "ls", "-q")
	for _, b := range junk.blobs() {
		if strings.Contains(content, b.Digest) {
			t.Errorf("garbage collection kept %s of the removed %s", b.Digest, junk.Ref)
		}
	}
	for _, img := range []Image{pause, app} {
		for _, b := range img.blobs() {
			if !strings.Contains(content, b.Digest) {
				t.Errorf("garbage collection removed %s of %s", b.Digest, img.Ref)
			}
		}
	}
	if out := c.run(c.crictl, "images", "-q"); strings.Contains(out, junk.Config.Digest) || !strings.Contains(out, app.Config.Digest) {
		t.Errorf("crictl images after removing %s:\n%s", junk.Ref, out)
	}
	// The blobs were the cache's: containerd changed none of them.
	for _, img := range []Image{pause, app} {
		for _, b := range img.blobs() {
			st, err := os.Stat(filepath.Join(c.root, contentDir, "blobs", "sha256", strings.TrimPrefix(b.Digest, "sha256:")))
			if err != nil || st.Size() != b.Size || st.Mode().Perm() != modeBlob {
				t.Errorf("blob %s after the run: %v %v", b.Digest, st, err)
			}
		}
	}
	if out := c.logText(); strings.Contains(out, "registry.labbake.test/v2") || strings.Contains(out, "PullImage") {
		t.Errorf("containerd tried to pull:\n%s", out)
	}
}

// runPod runs a host-network pod and a container from ref in it, waits
// for the container to exit and reads its log.
func (c *ctrd) runPod(dir, ref string) {
	t := c.t
	logs := filepath.Join(dir, "pods")
	pod := filepath.Join(dir, "pod.json")
	ctr := filepath.Join(dir, "container.json")
	writeJSON(t, pod, map[string]any{
		"metadata":      map[string]any{"name": "hello", "namespace": "default", "uid": "labbake-test", "attempt": 0},
		"log_directory": logs,
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	})
	writeJSON(t, ctr, map[string]any{
		"metadata": map[string]any{"name": "hello"},
		"image":    map[string]any{"image": ref},
		"log_path": "hello.log",
		"linux":    map[string]any{},
	})
	podID := strings.TrimSpace(c.run(c.crictl, "runp", pod))
	t.Cleanup(func() {
		c.runErr(c.crictl, "stopp", podID)
		c.runErr(c.crictl, "rmp", "-f", podID)
	})
	id := strings.TrimSpace(c.run(c.crictl, "create", podID, ctr, pod))
	c.run(c.crictl, "start", id)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := c.run(c.crictl, "inspect", "-o", "go-template", "--template", "{{.status.state}} {{.status.exitCode}}", id)
		if strings.HasPrefix(out, "CONTAINER_EXITED") {
			if strings.TrimSpace(out) != "CONTAINER_EXITED 0" {
				t.Errorf("container from %s: %s", ref, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container from %s still %s after 60s", ref, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(logs, "hello.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "hello from a preloaded image [world]") {
		t.Errorf("container log:\n%s", b)
	}
	// Both images are unpacked now, by the CRI.
	check := c.run(c.ctr, "images", "check")
	for _, r := range []string{"registry.labbake.test/pause:3.10.2", ref} {
		if !hasRow(check, r, "complete", "true") {
			t.Errorf("after the pod, %s is not unpacked:\n%s", r, check)
		}
	}
}

// start runs containerd with the CRI plugin on c.root, everything else
// of it (state, sockets, CNI dirs) under dir, with path in front of PATH.
func (c *ctrd) start(containerd, dir string, path []string) {
	t := c.t
	c.sock = filepath.Join(dir, "c.sock")
	c.log = filepath.Join(dir, "containerd.log")
	snapshotter := "overlayfs"
	cfg := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.blockfile"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.cri.v1.images"]
  snapshotter = %[5]q
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "registry.labbake.test/pause:3.10.2"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %[6]q
[plugins."io.containerd.cri.v1.runtime"]
  # The sandbox's OOM score (-998) needs CAP_SYS_RESOURCE, which test
  # machines (containers, sandboxed VMs) may lack.
  restrict_oom_score_adj = true
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [%[7]q]
  conf_dir = %[8]q
`, c.root, filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc", snapshotter,
		filepath.Join(dir, "certs.d"), filepath.Join(dir, "cni", "bin"), filepath.Join(dir, "cni", "net.d"))
	conf := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	c.env = append(os.Environ(), "PATH="+strings.Join(path, ":")+":"+os.Getenv("PATH"))
	cmd := exec.Command(containerd, "--config", conf, "--log-level", "debug")
	cmd.Env, cmd.Stdout, cmd.Stderr = c.env, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.cmd = cmd
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		unmountUnder(t, dir)
		if t.Failed() {
			t.Logf("containerd log (last lines):\n%s", tail(c.logText(), 60))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.runErr(c.ctr, "version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s in 30s:\n%s", c.sock, tail(c.logText(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs ctr or crictl against the test's containerd (namespace
// k8s.io) and returns its output, failing the test on an error.
func (c *ctrd) run(prog string, args ...string) string {
	c.t.Helper()
	out, err := c.runErr(prog, args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", filepath.Base(prog), strings.Join(args, " "), err, out)
	}
	return out
}

func (c *ctrd) runErr(prog string, args ...string) (string, error) {
	var pre []string
	if filepath.Base(prog) == "ctr" {
		pre = []string{"--address", c.sock, "--namespace", DefaultNamespace}
	} else {
		ep := "unix://" + c.sock
		pre = []string{"--config", os.DevNull, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, append(pre, args...)...)
	cmd.Env = c.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

func (c *ctrd) logText() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

// hasRow reports whether a line of out has every one of fields as a
// whitespace-separated field.
func hasRow(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		all := true
		for _, want := range fields {
			found := false
			for _, got := range f {
				if got == want || strings.HasPrefix(got, want+"(") {
					found = true
				}
			}
			all = all && found
		}
		if all {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func writeJSON(t *testing.T, p string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildHello builds testdata/hello as a static binary in dir.
func buildHello(t *testing.T, dir string) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = tool(t, "", "go")
	}
	out := filepath.Join(dir, "hello")
	cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/hello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building testdata/hello: %v\n%s", err, b)
	}
	return out
}

// unmountUnder unmounts what containerd left mounted under dir (overlay
// snapshots, shm of a sandbox), deepest first.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", mounts[i], err)
		}
	}
}
