package upstream

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"

	"github.com/labbake/labbake/internal/golden"
)

// releaseTime stands in for the proxy's commit time in tests.
var releaseTime = time.Date(2026, 10, 27, 12, 1, 4, 0, time.UTC)

// fakeKubernetesGoMod is the shape of k8s.io/kubernetes' go.mod: staging
// modules required at v0.0.0 and replaced by ./staging/…, and a sample
// module that is replaced but not required (never published).
func fakeKubernetesGoMod() *goModJSON {
	var m goModJSON
	m.Go = "1.26.0"
	m.GoDebug = append(m.GoDebug, struct{ Key, Value string }{"default", "go1.26"})
	for _, r := range [][2]string{{"github.com/spf13/cobra", "v1.10.2"}, {"k8s.io/api", "v0.0.0"}, {"k8s.io/client-go", "v0.0.0"}} {
		m.Require = append(m.Require, struct {
			Path, Version string
			Indirect      bool
		}{Path: r[0], Version: r[1]})
	}
	for _, p := range []string{"k8s.io/client-go", "k8s.io/api", "k8s.io/sample-controller"} {
		var r struct {
			Old, New struct{ Path, Version string }
		}
		r.Old.Path, r.New.Path = p, "./staging/src/"+p
		m.Replace = append(m.Replace, r)
	}
	return &m
}

// TestBuildPlans pins, per component, the throw-away go.mod and the exact go
// build command lines (tags, version stamps, -buildid=) against golden files.
func TestBuildPlans(t *testing.T) {
	k8s, err := Kubernetes("v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	pause, err := Program("pause", "3.10.2")
	if err != nil {
		t.Fatal(err)
	}
	plain := &goModJSON{Go: "1.26.6"}
	old := &goModJSON{Go: "1.21"}
	tests := []struct {
		c  Component
		up *goModJSON
	}{
		{k8s, fakeKubernetesGoMod()},
		{Containerd("v2.4.2"), plain},
		{Crictl("v1.37.0"), plain},
		{Etcd("v3.6.17"), plain},
		{CoreDNS("v1.14.6"), old}, // go line raised to 1.24 for the tool directive
		{pause, nil},
	}
	for _, tt := range tests {
		t.Run(tt.c.Name, func(t *testing.T) {
			var b bytes.Buffer
			if tt.up != nil {
				gomod, err := throwAwayGoMod(tt.c, tt.up)
				if err != nil {
					t.Fatal(err)
				}
				b.Write(gomod)
			} else {
				fmt.Fprintf(&b, "(local program %s, %d source files)\n", tt.c.Module, len(tt.c.Source))
			}
			b.WriteString("\n# go commands\n")
			for _, cmd := range buildCommands(tt.c, tt.c.LDFlags(ModuleInfo{Time: releaseTime}), "/out") {
				fmt.Fprintf(&b, "go %q\n", cmd)
			}
			golden.Check(t, filepath.Join("testdata", tt.c.Name+".plan"), b.Bytes())
		})
	}
}

func TestVersions(t *testing.T) {
	tests := []struct {
		in, major, minor, staging string
		wantErr                   bool
	}{
		{in: "v1.37.2", major: "1", minor: "37", staging: "v0.37.2"},
		{in: "v1.38.0-rc.1", major: "1", minor: "38", staging: "v0.38.0-rc.1"},
		{in: "1.37.2", wantErr: true},
		{in: "v1.37", wantErr: true},
		{in: "v1.x.2", wantErr: true},
		{in: "v2.4.2", major: "2", minor: "4", wantErr: true}, // not Kubernetes: no staging version
	}
	for _, tt := range tests {
		major, minor, err := majorMinor(tt.in)
		if err == nil && (major != tt.major || minor != tt.minor) {
			t.Errorf("majorMinor(%q) = %q, %q; want %q, %q", tt.in, major, minor, tt.major, tt.minor)
		}
		sv, serr := stagingVersion(tt.in)
		if (serr != nil) != tt.wantErr || sv != tt.staging {
			t.Errorf("stagingVersion(%q) = %q, %v; want %q (error %v)", tt.in, sv, serr, tt.staging, tt.wantErr)
		}
	}
	for _, tt := range []struct {
		a, b string
		less bool
	}{{"1.21", "1.24", true}, {"1.26.0", "1.26", false}, {"1.26", "1.26.1", true}, {"1.100", "1.26", false}} {
		if got := versionLess(tt.a, tt.b); got != tt.less {
			t.Errorf("versionLess(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

// fakeResults are components with small stand-in binaries, enough to check
// the layout without compiling anything.
func fakeResults(t *testing.T) []*Result {
	t.Helper()
	dir := t.TempDir()
	k8s, err := Kubernetes("v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	var out []*Result
	for _, c := range []Component{k8s, Etcd("v3.6.17"), Containerd("v2.4.2"), Crictl("v1.37.0")} {
		r := &Result{Component: c, Module: ModuleInfo{Path: c.Module, Version: c.Version, Time: releaseTime}}
		for _, b := range c.Binaries {
			p := filepath.Join(dir, c.Name, b.Name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+b.Name+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := hashFile(p)
			if err != nil {
				t.Fatal(err)
			}
			r.Files = append(r.Files, f)
		}
		out = append(out, r)
	}
	return out
}

// TestLayout checks the URL layout, the archives (listed by GNU tar) and the
// checksum files (checked by sha256sum -c and sha256sum), and that a second
// layout of the same binaries gives the same bytes.
func TestLayout(t *testing.T) {
	results := fakeResults(t)
	root := t.TempDir()
	pub, err := Layout(root, results)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, p := range pub {
		paths = append(paths, p.Path)
	}
	golden.Check(t, filepath.Join("testdata", "layout.txt"), []byte(strings.Join(paths, "\n")+"\n"))

	// Same binaries, another directory: same bytes.
	again, err := Layout(t.TempDir(), results)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pub {
		if pub[i] != again[i] {
			t.Errorf("second layout differs: %+v vs %+v", pub[i], again[i])
		}
	}

	// Files with "HASH  NAME" lines: sha256sum -c in their directory.
	for _, sums := range []string{
		"github.com/etcd-io/etcd/releases/download/v3.6.17/SHA256SUMS",
		"github.com/containerd/containerd/releases/download/v2.4.2/containerd-2.4.2-linux-amd64.tar.gz.sha256sum",
	} {
		cmd := exec.Command("sha256sum", "-c", filepath.Base(sums))
		cmd.Dir = filepath.Join(root, filepath.Dir(sums))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c %s: %v\n%s", sums, err, out)
		}
	}
	// Bare digests: compare with sha256sum's.
	for _, f := range []string{
		"dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet",
		"github.com/kubernetes-sigs/cri-tools/releases/download/v1.37.0/crictl-v1.37.0-linux-amd64.tar.gz",
	} {
		out, err := exec.Command("sha256sum", filepath.Join(root, f)).Output()
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, f+".sha256"))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Fields(string(out))[0]; string(got) != want {
			t.Errorf("%s.sha256 = %q, sha256sum says %s", f, got, want)
		}
	}

	// Archive members as GNU tar lists them: upstream's top directories,
	// root-owned, dated the release.
	for _, tt := range []struct {
		archive string
		want    []string
	}{
		{"github.com/etcd-io/etcd/releases/download/v3.6.17/etcd-v3.6.17-linux-amd64.tar.gz", []string{
			"drwxr-xr-x 0/0 0 2026-10-27 12:01 etcd-v3.6.17-linux-amd64/",
			"-rwxr-xr-x 0/0 20 2026-10-27 12:01 etcd-v3.6.17-linux-amd64/etcd",
			"-rwxr-xr-x 0/0 23 2026-10-27 12:01 etcd-v3.6.17-linux-amd64/etcdctl",
			"-rwxr-xr-x 0/0 23 2026-10-27 12:01 etcd-v3.6.17-linux-amd64/etcdutl",
		}},
		{"github.com/containerd/containerd/releases/download/v2.4.2/containerd-2.4.2-linux-amd64.tar.gz", []string{
			"drwxr-xr-x 0/0 0 2026-10-27 12:01 bin/",
			"-rwxr-xr-x 0/0 26 2026-10-27 12:01 bin/containerd",
			"-rwxr-xr-x 0/0 39 2026-10-27 12:01 bin/containerd-shim-runc-v2",
			"-rwxr-xr-x 0/0 33 2026-10-27 12:01 bin/containerd-stress",
			"-rwxr-xr-x 0/0 19 2026-10-27 12:01 bin/ctr",
		}},
		{"github.com/kubernetes-sigs/cri-tools/releases/download/v1.37.0/crictl-v1.37.0-linux-amd64.tar.gz", []string{
			"-rwxr-xr-x 0/0 22 2026-10-27 12:01 crictl",
		}},
	} {
		cmd := exec.Command("tar", "--numeric-owner", "--utc", "-tvzf", filepath.Join(root, tt.archive))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tar -tvzf %s: %v", tt.archive, err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			got = append(got, strings.Join(strings.Fields(line), " "))
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("tar -tv %s:\n%s\nwant\n%s", tt.archive, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
	}
}

func TestTarRejects(t *testing.T) {
	for _, ms := range [][]member{
		{{name: "../x", data: []byte("x")}},
		{{name: "/abs", data: []byte("x")}},
		{{name: "a", data: []byte("x")}, {name: "./a", data: []byte("y")}},
	} {
		if _, err := tarBytes(ms, releaseTime, true); err == nil {
			t.Errorf("tarBytes(%+v) succeeded", ms)
		}
	}
}

// TestWriteImage writes an image twice in different places and checks the
// bytes agree, then reads it back with containers/image (the library skopeo
// and podman use) and unpacks its layer with GNU tar to check the file
// capability with getcap.
func TestWriteImage(t *testing.T) {
	spec := ImageSpec{
		Registry:     "registry.k8s.io",
		Repository:   "coredns/coredns",
		Tag:          "v1.14.6",
		Files:        []ImageFile{{Path: "/coredns", Data: []byte("not really coredns\n"), Mode: 0o755, Capabilities: []uint{CapNetBindService}}},
		Entrypoint:   []string{"/coredns"},
		User:         "65532:65532",
		ExposedPorts: []string{"53/udp", "53/tcp"},
		Created:      releaseTime,
	}
	a, err := WriteImage(filepath.Join(t.TempDir(), "a"), spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := WriteImage(filepath.Join(t.TempDir(), "b"), spec)
	if err != nil {
		t.Fatal(err)
	}
	if a.Manifest != b.Manifest || a.Layer != b.Layer {
		t.Errorf("two writes differ: %s/%s vs %s/%s", a.Manifest, a.Layer, b.Manifest, b.Layer)
	}

	// containers/image reads the layout as a registry client would.
	cfg := inspectOCI(t, a)
	if got := cfg.Config.Entrypoint; len(got) != 1 || got[0] != "/coredns" || cfg.Config.User != "65532:65532" {
		t.Errorf("config: %+v", cfg.Config)
	}
	if _, ok := cfg.Config.ExposedPorts["53/udp"]; !ok || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config: %+v", cfg)
	}
	if !cfg.Created.Equal(releaseTime) {
		t.Errorf("created %v, want %v", cfg.Created, releaseTime)
	}

	// GNU tar restores the capability; getcap reads it.
	layer, err := os.ReadFile(filepath.Join(a.Layout, "blobs", "sha256", a.Layer.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("tar", "--xattrs", "--xattrs-include=security.capability", "-xzf", "-", "-C", dir)
	cmd.Stdin = bytes.NewReader(layer)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	out, err := exec.Command("getcap", filepath.Join(dir, "coredns")).CombinedOutput()
	if err != nil {
		t.Skipf("getcap: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "cap_net_bind_service=ep") {
		t.Errorf("getcap: %s; want cap_net_bind_service=ep", out)
	}
	for _, f := range []string{"etc/passwd", "etc/group"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("/tmp: %v %v; want drwxrwxrwt", fi.Mode(), err)
	}
}

// inspectOCI reads img's config through containers/image.
func inspectOCI(t *testing.T, img *Image) imgspec.Image {
	t.Helper()
	raw, err := ociConfig(context.Background(), "oci:"+img.Layout+":"+img.Spec.Tag)
	if err != nil {
		t.Fatal(err)
	}
	var cfg imgspec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestServe(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "dl.k8s.io", "release", "v1.37.2", "bin", "linux", "amd64", "kubectl.sha256")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Serve(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL %s: want 127.0.0.1", s.URL)
	}
	if got := httpGet(t, s.URL+"/dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubectl.sha256"); string(got) != "abc" {
		t.Errorf("got %q", got)
	}
	if want := "https://dl.k8s.io=" + s.URL + "/dl.k8s.io"; s.Mirrors()[0] != want {
		t.Errorf("mirror %s, want %s", s.Mirrors()[0], want)
	}
	resp, err := http.Get(s.URL + "/dl.k8s.io/release/v9.9.9/bin/linux/amd64/kubectl")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing file: %s", resp.Status)
	}
}

func httpGet(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRegistry pushes an assembled image to a real docker-registry and pulls
// it back with containers/image: the registry keeps the local digest.
func TestRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts docker-registry")
	}
	if _, err := os.Stat(RegistryBinary); err != nil {
		t.Skipf("%s: %v (apt-get install docker-registry)", RegistryBinary, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := WriteImage(filepath.Join(t.TempDir(), "img"), ImageSpec{
		Registry: "registry.k8s.io", Repository: "labbake/tiny", Tag: "v1", Created: ProgramEpoch,
		Files:      []ImageFile{{Path: "/hello", Data: []byte("hello\n"), Mode: 0o644}},
		Entrypoint: []string{"/hello"},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := StartRegistry(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if err := reg.Push(ctx, img); err != nil {
		t.Fatal(err)
	}
	pulled := filepath.Join(t.TempDir(), "pulled")
	if err := reg.Pull(ctx, "labbake/tiny", "v1", pulled); err != nil {
		t.Fatal(err)
	}
	checkPulledLayer(t, pulled, img, map[string]string{"hello": "hello\n"})
	if _, err := reg.ManifestDigest(ctx, "labbake/tiny", "v2"); err == nil {
		t.Error("a missing tag has a digest")
	}
	if conf := reg.RegistriesConf(); !strings.Contains(conf, `location = "`+reg.Host+`"`) {
		t.Errorf("registries.conf:\n%s", conf)
	}
}

// checkPulledLayer checks that the layout pulled holds img's layer blob
// unchanged and that the layer has the files want (name → content).
func checkPulledLayer(t *testing.T, pulled string, img *Image, want map[string]string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(pulled, "blobs", "sha256", img.Layer.Encoded()))
	if err != nil {
		t.Fatalf("pulled layout lacks the layer %s: %v", img.Layer, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := want[h.Name]; ok {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			got[h.Name] = string(b)
		}
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("pulled %s: %q, want %q", name, got[name], w)
		}
	}
}

// ociConfig reads the config blob of an image by its containers/image name.
func ociConfig(ctx context.Context, name string) ([]byte, error) {
	ref, err := alltransports.ParseImageName(name)
	if err != nil {
		return nil, err
	}
	img, err := ref.NewImage(ctx, &types.SystemContext{})
	if err != nil {
		return nil, err
	}
	defer img.Close()
	return img.ConfigBlob(ctx)
}

func TestThrowAwayGoModErrors(t *testing.T) {
	k8s, err := Kubernetes("v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	// A Kubernetes go.mod without staging replacements is not one this
	// builder understands: say so rather than build against v0.0.0.
	if _, err := throwAwayGoMod(k8s, &goModJSON{Go: "1.26.0"}); err == nil || !strings.Contains(err.Error(), "staging") {
		t.Errorf("no staging replacements: %v", err)
	}
	if _, err := Kubernetes("1.37.2"); err == nil {
		t.Error("Kubernetes(1.37.2) without the v succeeded")
	}
	if _, err := Program("nope", "v1"); err == nil {
		t.Error("Program(nope) succeeded")
	}
	if _, err := Bake(context.Background(), &Builder{CacheDir: t.TempDir()}, Options{Only: []string{"kubelet"}, OutDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "unknown component") {
		t.Errorf("Bake(kubelet): %v", err)
	}
}
