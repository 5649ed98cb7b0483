package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/source/oci"
)

// TestShippedLab bakes every component, serves them, pushes the images and
// points a copy of the shipped lab at them with the values file, the
// --mirror flags and registries.conf (through $CONTAINERS_REGISTRIES_CONF,
// which is how labbake's containers/image reads it). Then labbake itself,
// built from this module, must lock the lab and plan both roles from the
// lock alone (--frozen), every artifact at the digest of the file served;
// and every image the values file names must resolve through labbake's OCI
// source to the manifest pushed. The Debian base comes from deb.debian.org
// and is kept in labbake's default cache (a cold one builds it with
// mmdebstrap: minutes and 1.2 GB).
func TestShippedLab(t *testing.T) {
	if testing.Short() {
		t.Skip("builds from the Go module proxy")
	}
	if os.Getenv(buildEnv) != "1" {
		t.Skipf("set %s=1 to build every component and lock the shipped lab against them", buildEnv)
	}
	cacheDir, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	o, err := Bake(ctx, &Builder{CacheDir: cacheDir, Log: log}, Options{Versions: DefaultVersions(), OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Serve(o.WWW)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	reg, err := StartRegistry(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	for _, img := range o.Images {
		if err := reg.Push(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	values := filepath.Join(dir, "values.yaml")
	for p, data := range map[string][]byte{conf: []byte(reg.RegistriesConf()), values: o.Values()} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)

	labbake := filepath.Join(dir, "labbake")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", labbake, "./cmd/labbake")
	build.Dir = shippedLab
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/labbake: %v\n%s", err, out)
	}
	lab := filepath.Join(dir, "lab")
	if err := os.MkdirAll(lab, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"lab.yaml", "recipes", "units", "overlays"} {
		if out, err := exec.Command("cp", "-a", filepath.Join(shippedLab, p), lab).CombinedOutput(); err != nil {
			t.Fatalf("copying the shipped lab: %v\n%s", err, out)
		}
	}
	args := []string{"-C", lab, "--values", values}
	for _, m := range srv.Mirrors() {
		args = append(args, "--mirror", m)
	}
	run := func(verb ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, labbake, append(slices.Clone(args), verb...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("labbake %s: %v\n%s", strings.Join(verb, " "), err, stderr.String())
		}
		return out
	}

	served := map[string]string{} // upstream URL → sha256 of the file served
	for _, p := range o.Published {
		served["https://"+p.Path] = "sha256:" + p.SHA256
	}
	run("lock")
	lockData, err := os.ReadFile(filepath.Join(lab, "labbake.lock"))
	if err != nil {
		t.Fatal(err)
	}
	var lock struct{ Inputs map[string]string }
	if err := json.Unmarshal(lockData, &lock); err != nil {
		t.Fatal(err)
	}
	checksums := 0
	for k, d := range lock.Inputs {
		f := strings.Fields(k)
		if f[0] != "checksum" {
			continue
		}
		checksums++
		// "checksum SUMS-URL FILE": FILE beside SUMS-URL.
		u := f[1][:strings.LastIndex(f[1], "/")+1] + f[2]
		if served[u] != d {
			t.Errorf("lock pins %s at %s; served %q", u, d, served[u])
		}
	}
	if checksums != 13 {
		t.Errorf("lock pins %d checksum inputs, want the 13 artifacts of master and node:\n%s", checksums, lockData)
	}

	for _, role := range []string{"master", "node"} {
		var plan struct {
			Inputs []struct{ Kind, Source, Digest string }
		}
		if err := json.Unmarshal(run("plan", role, "--frozen", "--json"), &plan); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, in := range plan.Inputs {
			if !strings.HasPrefix(in.Kind, "artifact-") {
				continue
			}
			n++
			if served[in.Source] != in.Digest {
				t.Errorf("%s: %s %s at %s; served %q", role, in.Kind, in.Source, in.Digest, served[in.Source])
			}
		}
		t.Logf("%s: %d inputs, %d artifacts from the server", role, len(plan.Inputs), n)
		if n == 0 {
			t.Errorf("%s: no artifacts in the plan", role)
		}
	}

	// Images by the names the lab writes, through labbake's OCI source.
	store, err := cache.Open(filepath.Join(dir, "cache"), nil)
	if err != nil {
		t.Fatal(err)
	}
	src := &oci.Source{}
	for _, img := range o.Images {
		res, err := src.Pull(ctx, store, "docker://"+img.Upstream(), "")
		if err != nil {
			t.Errorf("%s: %v", img.Upstream(), err)
			continue
		}
		if res.ManifestDigest != img.Manifest.String() {
			t.Errorf("%s resolves to %s, pushed %s", img.Upstream(), res.ManifestDigest, img.Manifest)
		}
	}
	if !bytes.Contains(o.Values(), []byte(`snapshot: ""`)) {
		t.Error("values file sets no empty snapshot")
	}
}
