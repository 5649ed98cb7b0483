package published

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var (
	hexA = strings.Repeat("a", 64)
	hexB = strings.Repeat("b", 64)
	hexC = strings.Repeat("c", 64)
	hexD = strings.Repeat("d", 64)
)

// example is the shape labbake publish writes.
var example = `{"role":"node","plan_digest":"sha256:` + hexA + `","qcow2_sha256":"` + hexB + `",` +
	`"artifact":{"repository":"ghcr.io/acme/labbake-node","digest":"sha256:` + hexC + `","tags":["v1","plan-` + hexA[:12] + `"]},` +
	`"containerdisk":{"repository":"ghcr.io/acme/labbake-node","digest":"sha256:` + hexD + `","tags":["v1-disk"]}}`

func sample() *Record {
	return &Record{
		Role: "node", PlanDigest: "sha256:" + hexA, QCOW2SHA256: hexB,
		Artifact:      &Image{Repository: "ghcr.io/acme/labbake-node", Digest: "sha256:" + hexC, Tags: []string{"v1", "plan-" + hexA[:12]}},
		ContainerDisk: &Image{Repository: "ghcr.io/acme/labbake-node", Digest: "sha256:" + hexD, Tags: []string{"v1-disk"}},
	}
}

func TestReadExample(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node.published.json"), []byte(example), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Read(dir, "node")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, sample()) {
		t.Errorf("read %+v, want %+v", r, sample())
	}
	if got, want := r.ContainerDisk.Ref(), "ghcr.io/acme/labbake-node@sha256:"+hexD; got != want {
		t.Errorf("Ref() = %s, want %s", got, want)
	}
	if r.Stale(hexB) || !r.Stale(hexC) {
		t.Error("Stale: wrong")
	}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	rec := sample()
	if err := Write(dir, rec); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "node.published.json"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %o, want 644", st.Mode().Perm())
	}
	got, err := Read(dir, "node")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Errorf("read back %+v, want %+v", got, rec)
	}
	// Only a containerDisk, without tags: written as [], read back.
	rec.Artifact = nil
	rec.ContainerDisk.Tags = nil
	if err := Write(dir, rec); err != nil {
		t.Fatal(err)
	}
	if rec.ContainerDisk.Tags != nil {
		t.Error("Write changed its argument")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "node.published.json"))
	if !strings.Contains(string(b), `"tags": []`) || strings.Contains(string(b), `"artifact"`) || !strings.HasSuffix(string(b), "}\n") {
		t.Errorf("written:\n%s", b)
	}
	if got, err = Read(dir, "node"); err != nil || got.Artifact != nil || got.ContainerDisk.Digest != rec.ContainerDisk.Digest {
		t.Errorf("read back %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left: %v", entries)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir, "node"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v, want fs.ErrNotExist", err)
	}
	for _, tc := range []struct {
		name, json, want string
	}{
		{"not JSON", "{", "unexpected end"},
		{"another role", strings.Replace(example, `"role":"node"`, `"role":"master"`, 1), `role "master", not "node"`},
		{"short plan digest", strings.Replace(example, `"plan_digest":"sha256:`+hexA, `"plan_digest":"sha256:abc`, 1), "plan_digest"},
		{"qcow2 sha with prefix", strings.Replace(example, `"qcow2_sha256":"`, `"qcow2_sha256":"sha256:`, 1), "qcow2_sha256"},
		{"repository with tag", strings.Replace(example, `labbake-node","digest":"sha256:`+hexD, `labbake-node:v1","digest":"sha256:`+hexD, 1), "containerdisk.repository"},
		{"upper-case digest", strings.Replace(example, hexD, strings.ToUpper(hexD), 1), "containerdisk.digest"},
		{"bad tag", strings.Replace(example, `"v1-disk"`, `"-x"`, 1), "containerdisk.tags[0]"},
		{"nothing published", `{"role":"node","plan_digest":"sha256:` + hexA + `","qcow2_sha256":"` + hexB + `"}`, "nothing was published"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "node.published.json")
			if err := os.WriteFile(p, []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(dir, "node")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %v, want one naming %s with %q", err, p, tc.want)
			}
		})
	}
}

func TestWriteRefusesInvalid(t *testing.T) {
	dir := t.TempDir()
	rec := sample()
	rec.ContainerDisk.Digest = "sha256:nope"
	if err := Write(dir, rec); err == nil || !strings.Contains(err.Error(), "containerdisk.digest") {
		t.Errorf("error %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files written: %v", entries)
	}
}

func TestValidateOneLine(t *testing.T) {
	err := (&Record{Role: "node"}).Validate()
	if err == nil || strings.Contains(err.Error(), "\n") || strings.Count(err.Error(), "; ") != 2 {
		t.Errorf("error %q, want three problems on one line", err)
	}
	if sample().Validate() != nil {
		t.Error("the sample is invalid")
	}
}
