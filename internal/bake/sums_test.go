package bake

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/labbake/labbake/internal/iox"
)

func publish(t *testing.T, dir, role, lie string) {
	t.Helper()
	if err := publishFiles(dir, role, lie); err != nil {
		t.Fatal(err)
	}
}

// publishFiles writes the outputs of a role into dir as a build does: the
// image, its SBOM and a manifest naming both. lie changes what the
// manifest says of one of them ("image size", "sbom sum") or leaves the
// SBOM out ("no sbom": a build before SBOMs).
func publishFiles(dir, role, lie string) error {
	image, sbom := []byte("image of "+role), []byte(`{"sbom": "`+role+`"}`+"\n")
	m := Manifest{Role: role, Output: ManifestOutput{File: role + ".qcow2", SHA256: sha256Hex(image), Size: int64(len(image))}}
	m.SBOM = &ManifestSBOM{File: role + ".spdx.json", SHA256: sha256Hex(sbom)}
	switch lie {
	case "image size":
		m.Output.Size++
	case "sbom sum":
		m.SBOM.SHA256 = sha256Hex(nil)
	case "no sbom":
		m.SBOM = nil
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{role + ".qcow2", image}, {role + ".spdx.json", sbom}, {role + ".manifest.json", mb}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// sumsNames returns the file names SHA256SUMS lists, in order.
func sumsNames(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || !iox.IsSHA256Hex(sum) {
			t.Fatalf("line %q is not sha256sum's", line)
		}
		names = append(names, name)
	}
	return names
}

// sha256sumCheck runs the real sha256sum -c on dir's SHA256SUMS.
func sha256sumCheck(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("sha256sum"); err != nil {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatal(err)
		}
		t.Skip("sha256sum: ", err)
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", SumsFile)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
}

func TestWriteSums(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "master", "")
	publish(t, dir, "node", "")
	publish(t, dir, "bigger", "image size")
	publish(t, dir, "stale", "sbom sum")
	publish(t, dir, "old", "no sbom")
	// What is never listed: the machine's secrets and settings, files of
	// a killed build, anything that is not a role's output.
	for _, p := range []string{"seed/cp.iso", "pki/ca.key", "kubeconfig", "kit/ssh_config", "values.list", ".master.qcow2.tmp-1", "notes.json", "master.raw"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.manifest.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("master.manifest.json", filepath.Join(dir, "link.manifest.json")); err != nil {
		t.Fatal(err)
	}
	// A temporary file a killed rewrite left is removed.
	if err := os.WriteFile(filepath.Join(dir, "."+SumsFile+".tmp-9"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSums(context.Background(), dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bigger.manifest.json", "bigger.spdx.json", // not bigger.qcow2: its size is not the manifest's
		"master.manifest.json", "master.qcow2", "master.spdx.json",
		"node.manifest.json", "node.qcow2", "node.spdx.json",
		"old.manifest.json", "old.qcow2", // a manifest that names no SBOM
		"stale.manifest.json", "stale.qcow2", // not stale.spdx.json: not the one its manifest names
	}
	if got := sumsNames(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("SHA256SUMS lists\n%q, want\n%q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "."+SumsFile+".tmp-9")); !os.IsNotExist(err) {
		t.Errorf("the temporary file of a killed rewrite is left: %v", err)
	}
	sha256sumCheck(t, dir)
}

// Roles published at the same time, each rewriting SHA256SUMS after its
// own commit, lose none of each other's lines.
func TestWriteSumsConcurrent(t *testing.T) {
	dir := t.TempDir()
	const roles = 8
	var wg sync.WaitGroup
	errs := make(chan error, roles)
	for i := range roles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := publishFiles(dir, fmt.Sprintf("role%d", i), ""); err != nil {
				errs <- err
				return
			}
			errs <- writeSums(context.Background(), dir, slog.New(slog.DiscardHandler))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := sumsNames(t, dir); len(got) != 3*roles {
		t.Errorf("SHA256SUMS lists %d files, want %d: %q", len(got), 3*roles, got)
	}
	sha256sumCheck(t, dir)
}
