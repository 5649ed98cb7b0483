package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/cli"
	"github.com/labbake/labbake/internal/published"
	"github.com/labbake/labbake/test/upstream"
)

// TestRelease runs scripts/release-role.sh, the release workflow's only
// step that does anything (.github/workflows/release.yml), on a small lab
// against a real registry on 127.0.0.1: lock, plan --frozen, build
// --frozen, labbake test (a boot), SHA256SUMS checked, publish as an
// artifact and as a containerDisk. Then, as a hypervisor host would,
// labbake pull takes each back into an empty dir, byte-identical to what
// was built, and labbake kit --kubevirt names the published containerDisk
// by its digest.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("bakes and boots a role, publishes it (about 3 minutes)")
	}
	requireBootTools(t)
	for _, tool := range []string{"make", "sha256sum", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("LABBAKE_REQUIRE_TOOLS") == "1" {
				t.Fatalf("%s not installed", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	ctx := context.Background()
	regDir := t.TempDir()
	reg, err := upstream.StartRegistry(ctx, regDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })

	lab, out, cache := t.TempDir(), t.TempDir(), e2eCache(t)
	write(t, lab, "lab.yaml", "name: e2e-release\nepoch: 1735689600\nnetwork: {mode: user}\nnodes:\n"+
		"  - {name: n1, role: master, ip: 172.18.0.5, memory: 1GiB}\n")
	write(t, lab, "recipes/master.yaml", "base:\n  debian:\n    suite: trixie\n    packages: ["+strings.Join(basePackages, ", ")+"]\ndisk: {size: 3GiB}\n"+networkdFiles)
	run := func(args ...string) string {
		t.Helper()
		var so, se bytes.Buffer
		if err := cli.Run(ctx, append([]string{"-C", lab, "--cache", cache, "--out", out}, args...), &so, &se, os.Getenv); err != nil {
			t.Fatalf("labbake %s: %v\n%s", strings.Join(args, " "), err, tail(se.String(), 20))
		}
		return so.String()
	}
	run("lock")

	repo := reg.Host + "/acme/labbake-master"
	script, err := filepath.Abs("../../scripts/release-role.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, script, "master", repo, "v0.1.0")
	cmd.Env = append(os.Environ(), "OUT="+out,
		"LABBAKE_FLAGS=-C "+lab+" --cache "+cache, "LABBAKE_PUBLISH_FLAGS=--tls-verify=false")
	start := time.Now()
	so, err := cmd.Output()
	var se []byte
	if ee, ok := err.(*exec.ExitError); ok {
		se = ee.Stderr
	}
	if err != nil {
		t.Fatalf("release-role.sh: %v\n%s\n%s", err, so, tail(string(se), 30))
	}
	t.Logf("release-role.sh master in %s", time.Since(start).Round(time.Second))
	listed, err := os.ReadFile(filepath.Join(out, "master.release-assets"))
	if err != nil {
		t.Fatal(err)
	}
	var assets []string
	for _, l := range strings.Split(strings.TrimSpace(string(listed)), "\n") {
		assets = append(assets, filepath.Base(l))
	}
	if strings.Join(assets, " ") != "master.qcow2 master.manifest.json master.spdx.json master.SHA256SUMS" {
		t.Errorf("release assets: %v", assets)
	}
	check := exec.Command("sha256sum", "--check", "--strict", "master.SHA256SUMS")
	check.Dir = out
	if o, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check master.SHA256SUMS: %v\n%s", err, o)
	}

	rec, err := published.Read(out, "master")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Artifact == nil || rec.ContainerDisk == nil || rec.Artifact.Repository != repo ||
		!strings.Contains(strings.Join(rec.ContainerDisk.Tags, " "), "v0.1.0-disk") {
		t.Fatalf("master.published.json: %+v", rec)
	}

	// A hypervisor host: each format pulled into an empty dir, verified,
	// byte-identical.
	for _, img := range []*published.Image{rec.Artifact, rec.ContainerDisk} {
		dir := t.TempDir()
		run("--out", dir, "pull", img.Ref(), "--tls-verify=false")
		for _, name := range []string{"master.qcow2", "master.manifest.json", "master.spdx.json"} {
			if !sameFile(t, filepath.Join(out, name), filepath.Join(dir, name)) {
				t.Errorf("pull %s: %s differs from what was built", img.Ref(), name)
			}
		}
	}

	// The KubeVirt kit names the containerDisk by the digest pushed.
	run("kit", "--kubevirt", reg.Host+"/acme/labbake-{role}")
	vm, err := os.ReadFile(filepath.Join(out, "kit", "kubevirt", "vm-n1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(vm), rec.ContainerDisk.Ref()) {
		t.Errorf("vm-n1.yaml does not name %s:\n%s", rec.ContainerDisk.Ref(), vm)
	}

	// skopeo sees the containerDisk as an image, tagged as the script said.
	raw, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+repo+":v0.1.0-disk").Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	var insp struct{ Digest string }
	if err := json.Unmarshal(raw, &insp); err != nil || insp.Digest != rec.ContainerDisk.Digest {
		t.Errorf("skopeo inspect: digest %q, want %s (%v)", insp.Digest, rec.ContainerDisk.Digest, err)
	}
}

// sameFile compares two files by their sha256.
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	sum := func(p string) string {
		f, err := os.Open(p)
		if err != nil {
			t.Error(err)
			return p
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Error(err)
		}
		return string(h.Sum(nil))
	}
	return sum(a) == sum(b)
}
