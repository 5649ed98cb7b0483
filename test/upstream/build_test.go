package upstream

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildEnv gates the tests that compile upstream modules: cold, crictl alone
// takes minutes on two cores.
const buildEnv = "LABBAKE_UPSTREAM_BUILD"

// TestBuildServePull builds crictl, pause, the hostname server and the
// Calico and Headlamp stand-ins end to end (from the Go module proxy into
// the cache of DefaultCacheDir) and takes runc and the CNI plugins from
// Debian trixie, twice: the
// second time in another directory with an empty Go build cache, and every
// binary, archive and image must come out byte-identical. It then serves the
// tree, fetches crictl's archive and checksum over HTTP and runs the crictl
// inside, pushes the images to docker-registry, pulls them back with
// containers/image and runs the pulled programs; it runs the served
// calicoctl and a CNI plugin from the served archive.
func TestBuildServePull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds from the Go module proxy")
	}
	if os.Getenv(buildEnv) != "1" {
		t.Skipf("set %s=1 to build crictl, pause and hostname from the Go module proxy (minutes when the cache is cold)", buildEnv)
	}
	cache, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	opt := Options{Versions: DefaultVersions(), Only: []string{"pause", "hostname", "crictl", "calico", "headlamp", "runc", "cni"}}

	opt.OutDir = t.TempDir()
	first, err := Bake(ctx, &Builder{CacheDir: cache, Log: log}, opt)
	if err != nil {
		t.Fatal(err)
	}
	opt.OutDir = t.TempDir()
	second, err := Bake(ctx, &Builder{CacheDir: cache, GoCache: t.TempDir(), Log: log}, opt)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range first.Results {
		for j, f := range r.Files {
			g := second.Results[i].Files[j]
			if f.SHA256 != g.SHA256 {
				t.Errorf("%s: %s and %s differ", f.Name, f.Path, g.Path)
			}
			t.Logf("%s %s: %d bytes, sha256 %s, built in %v", r.Component.Name, f.Name, f.Size, f.SHA256, r.Elapsed.Round(time.Second))
		}
	}
	if fmt.Sprint(first.Published) != fmt.Sprint(second.Published) {
		t.Errorf("published trees differ:\n%v\n%v", first.Published, second.Published)
	}
	for i, img := range first.Images {
		if img.Manifest != second.Images[i].Manifest {
			t.Errorf("image %s: manifests %s and %s", img.Spec.Repository, img.Manifest, second.Images[i].Manifest)
		}
	}

	// The tree over HTTP, like dl.k8s.io and GitHub releases.
	srv, err := Serve(first.WWW)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	v := opt.Versions.Crictl
	base := srv.URL + "/github.com/kubernetes-sigs/cri-tools/releases/download/" + v + "/crictl-" + v + "-linux-amd64.tar.gz"
	archive := httpGet(t, base)
	sum := sha256.Sum256(archive)
	if want := string(httpGet(t, base+".sha256")); hex.EncodeToString(sum[:]) != want {
		t.Fatalf("crictl archive: sha256 %x, .sha256 says %s", sum, want)
	}
	crictl, err := fileFromTarGz(archive, "crictl")
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "crictl")
	if err := os.WriteFile(exe, crictl, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "crictl version "+v {
		t.Errorf("crictl --version: %q, %v; want %q", out, err, "crictl version "+v)
	}

	// The images through a real registry.
	reg, err := StartRegistry(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	progs := map[string][]byte{}
	for _, img := range first.Images {
		if err := reg.Push(ctx, img); err != nil {
			t.Fatal(err)
		}
		pulled := filepath.Join(t.TempDir(), "pulled")
		if err := reg.Pull(ctx, img.Spec.Repository, img.Spec.Tag, pulled); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(img.Spec.Entrypoint[0], "/")
		built, err := os.ReadFile(img.Spec.Files[0].Src)
		if err != nil {
			t.Fatal(err)
		}
		checkPulledLayer(t, pulled, img, map[string]string{name: string(built)})
		progs[name] = built
		t.Logf("image %s: manifest %s, %d bytes", img.Reference(reg.Host), img.Manifest, img.Size)
	}
	runHostname(t, progs["hostname"])
	runPause(t, progs["pause"])
	runStandIns(t, progs)
	runServedCalicoCNI(t, srv, opt.Versions)
}

// runHostname starts the hostname server on a free port and asks it.
func runHostname(t *testing.T, bin []byte) {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "hostname")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.Command(exe, "-listen", addr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("hostname after SIGTERM: %v\n%s", err, stderr.String())
		}
	}()
	want, _ := os.Hostname()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if string(b) != want+"\n" {
				t.Errorf("hostname answered %q, want %q", b, want+"\n")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hostname on %s: %v\n%s", addr, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runStandIns runs the stand-ins as the shipped lab's manifests do: the
// calico-node probes exit 0, install exits 0, and headlamp-server (with
// Headlamp's flags) answers HTTP.
func runStandIns(t *testing.T, progs map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	run := func(name string, args ...string) (string, error) {
		exe := filepath.Join(dir, filepath.Base(name))
		if err := os.WriteFile(exe, progs[name], 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(exe, args...).CombinedOutput()
		return string(out), err
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"bin/calico-node", []string{"-felix-live", "-bird-live"}},
		{"bin/calico-node", []string{"-felix-ready"}},
		{"opt/cni/bin/install", nil},
	} {
		if out, err := run(c.name, c.args...); err != nil {
			t.Errorf("%s %v: %v\n%s", c.name, c.args, err, out)
		}
	}
	if out, err := run("bin/calico-node", "-no-such-flag"); err == nil {
		t.Errorf("calico-node -no-such-flag succeeded: %s", out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	_ = l.Close()
	exe := filepath.Join(dir, "headlamp-server")
	if err := os.WriteFile(exe, progs["headlamp/headlamp-server"], 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-in-cluster", "-plugins-dir=/headlamp/plugins", "-port="+port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("headlamp-server after SIGTERM: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if !strings.Contains(string(b), "stand-in for headlamp v0.43.0") {
				t.Errorf("headlamp-server answered %q", b)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("headlamp-server on %s: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runServedCalicoCNI fetches the served calicoctl and CNI archive over HTTP
// and runs them: calicoctl version names the tag, Debian's loopback
// plugin answers CNI_COMMAND=VERSION.
func runServedCalicoCNI(t *testing.T, srv *Server, v Versions) {
	t.Helper()
	dir := t.TempDir()
	ctl := filepath.Join(dir, "calicoctl")
	if err := os.WriteFile(ctl, httpGet(t, srv.URL+"/github.com/projectcalico/calico/releases/download/"+v.Calico+"/calicoctl-linux-amd64"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ctl, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Client Version:    "+v.Calico) {
		t.Errorf("calicoctl version: %v\n%s", err, out)
	}
	tgz := httpGet(t, srv.URL+"/github.com/containernetworking/plugins/releases/download/"+v.CNIPlugins+"/cni-plugins-linux-amd64-"+v.CNIPlugins+".tgz")
	loopback, err := fileFromTarGz(tgz, "./loopback")
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "loopback")
	if err := os.WriteFile(exe, loopback, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
	cmd.Stdin = strings.NewReader(`{"cniVersion":"0.4.0"}`)
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"supportedVersions"`) {
		t.Errorf("loopback CNI_COMMAND=VERSION: %v\n%s", err, out)
	}
}

// runPause starts pause and stops it with SIGTERM: it must exit 0 at once.
func runPause(t *testing.T, bin []byte) {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("pause exited by itself: %v\n%s", err, stderr.String())
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || !strings.Contains(stderr.String(), "Shutting down, got signal: terminated") {
			t.Errorf("pause after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("pause ignored SIGTERM")
	}
}

// fileFromTarGz returns the regular file name from a gzip-compressed tar.
func fileFromTarGz(data []byte, name string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("archive has no %s", name)
		}
		if err != nil {
			return nil, err
		}
		if h.Name == name && h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
