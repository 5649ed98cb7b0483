package sbom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	spdxjson "github.com/spdx/tools-golang/json"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"

	"github.com/labbake/labbake/builders/dpkg"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/golden"
	"github.com/labbake/labbake/internal/plan"
)

// status is the dpkg status file of the test tree: an installed package
// with a versioned source, one of two architectures whose name needs an
// escaped SPDX ID, and one removed but for its configuration (not listed).
const status = `Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib (1:1.3.dfsg-3.1)
Version: 1:1.3.dfsg-3.1+b1
Description: compression library - runtime
 zlib is a library implementing the deflate compression method.

Package: libstdc++6
Status: install ok installed
Architecture: amd64
Source: gcc-14
Version: 14.2.0-19

Package: libstdc++6
Status: install ok installed
Architecture: i386
Source: gcc-14
Version: 14.2.0-19

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
`

func sum(s string) string { return "sha256:" + strings.Repeat(s, 64/len(s)) }

// testImage is a master image of lab demo whose packages come from a tree
// with the status file above, read as the bake reads it.
func testImage(t *testing.T) *Image {
	t.Helper()
	tr := tree.New(time.Unix(1.7e9, 0))
	if err := tr.AddFiles([]tree.File{{Path: "/var/lib/dpkg/status", Content: []byte(status)}}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	debs, err := dpkg.Installed(tr)
	if err != nil {
		t.Fatal(err)
	}
	return &Image{
		Lab: "demo", Role: "master", PlanDigest: sum("ab"), Epoch: 1735689600, Version: "v0.9.0",
		File: "master.qcow2", SHA256: strings.Repeat("cd", 32),
		Inputs: []plan.Input{
			{Field: "base", Kind: plan.BaseDebian, Name: "trixie/minbase/amd64", Digest: sum("01")},
			{Field: "layers[0]", Kind: plan.LayerTar, Name: "layers/k8s.tar", Digest: sum("02")},
			{Field: "artifacts[0]", Kind: plan.ArtifactURL, Name: "/usr/local/bin/kubectl", Source: "https://example.invalid/v1.35.0/bin/linux/amd64/kubectl", Digest: sum("03")},
			{Field: "artifacts[1]", Kind: plan.ArtifactGo, Name: "go.etcd.io/etcd/server/v3@v3.6.5", Digest: sum("04")},
			{Field: "images[0]", Kind: plan.ContainerImage, Name: "registry.k8s.io/pause:3.10.2", Source: "registry.k8s.io/pause:3.10.2", Digest: sum("05")},
			{Field: "units[0]", Kind: plan.Unit, Name: "hello.service", Digest: sum("06")},
		},
		Containers: []Container{{Ref: "registry.k8s.io/pause:3.10.2", Digest: sum("07")}},
		Debs:       debs,
	}
}

func TestMarshalGolden(t *testing.T) {
	img := testImage(t)
	got, err := Marshal(img)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "master.spdx.json"), got)
	again, err := Marshal(testImage(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, again) {
		t.Errorf("the same image gave two documents:\n%s\n%s", got, again)
	}
}

// TestContents reads the document back with the SPDX library and wants
// every Debian package with its version and purl, every input and
// container image with its digest, all contained by the image, which the
// document describes.
func TestContents(t *testing.T) {
	img := testImage(t)
	b, err := Marshal(img)
	if err != nil {
		t.Fatal(err)
	}
	var doc spdx.Document
	if err := spdxjson.ReadInto(bytes.NewReader(b), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.DocumentNamespace != "urn:labbake:demo:master:"+img.PlanDigest || doc.CreationInfo.Created != "2025-01-01T00:00:00Z" ||
		doc.CreationInfo.Creators[0].Creator != "labbake-v0.9.0" {
		t.Errorf("namespace %q, created %q, creators %+v", doc.DocumentNamespace, doc.CreationInfo.Created, doc.CreationInfo.Creators)
	}
	purls := map[string]*spdx.Package{}
	for _, p := range doc.Packages {
		for _, r := range p.PackageExternalReferences {
			purls[r.Locator] = p
		}
	}
	sums := map[string]string{}
	for _, p := range doc.Packages {
		for _, c := range p.PackageChecksums {
			sums[p.PackageName] += string(c.Algorithm) + ":" + c.Value
		}
	}
	for _, want := range []struct{ name, version, source, purl string }{
		{"zlib1g", "1:1.3.dfsg-3.1+b1", "zlib 1:1.3.dfsg-3.1", "pkg:deb/debian/zlib1g@1:1.3.dfsg-3.1+b1?arch=amd64"},
		{"libstdc++6", "14.2.0-19", "gcc-14 14.2.0-19", "pkg:deb/debian/libstdc++6@14.2.0-19?arch=amd64"},
		{"libstdc++6", "14.2.0-19", "gcc-14 14.2.0-19", "pkg:deb/debian/libstdc++6@14.2.0-19?arch=i386"},
	} {
		p := purls[want.purl]
		if p == nil || p.PackageName != want.name || p.PackageVersion != want.version || !strings.HasSuffix(p.PackageSourceInfo, " "+want.source) {
			t.Errorf("package %s: %+v", want.purl, p)
		}
	}
	if len(purls) != 3 {
		t.Errorf("%d Debian packages, want 3 (a package removed but for its configuration is not listed)", len(purls))
	}
	for _, in := range img.Inputs {
		if want := "SHA256:" + strings.TrimPrefix(in.Digest, "sha256:"); !strings.Contains(sums[in.Name], want) {
			t.Errorf("input %s: checksums %q, want %s", in.Field, sums[in.Name], want)
		}
	}
	if want := "SHA256:" + strings.TrimPrefix(img.Containers[0].Digest, "sha256:"); !strings.Contains(sums[img.Containers[0].Ref], want) {
		t.Errorf("container image: checksums %q, want %s", sums[img.Containers[0].Ref], want)
	}
	if want := "SHA256:" + img.SHA256; sums["master image of demo"] != want {
		t.Errorf("image: checksums %q, want %s", sums["master image of demo"], want)
	}
	rels := map[string]int{}
	for _, r := range doc.Relationships {
		rels[fmt.Sprintf("%s %s", r.RefA.ElementRefID, r.Relationship)]++
	}
	n := len(img.Debs) + len(img.Inputs) + len(img.Containers)
	if len(doc.Packages) != n+1 || rels["DOCUMENT DESCRIBES"] != 1 || rels["image-master CONTAINS"] != n {
		t.Errorf("%d packages, relationships %v; want %d contained by image-master", len(doc.Packages), rels, n)
	}
}

func TestDocumentErrors(t *testing.T) {
	img := testImage(t)
	img.Inputs = append(img.Inputs, img.Inputs[0])
	if _, err := Document(img); err == nil || !strings.Contains(err.Error(), "input-base") {
		t.Errorf("two inputs of one field: error %v", err)
	}
}

func TestID(t *testing.T) {
	for _, tt := range []struct {
		kind  string
		parts []string
		want  string
	}{
		{"deb", []string{"zlib1g", "amd64"}, "deb-zlib1g-amd64"},
		{"deb", []string{"libstdc++6", "amd64"}, "deb-libstdc--6-amd64-"},
		{"deb", []string{"libstdc--6", "amd64"}, "deb-libstdc--6-amd64"},
		{"input", []string{"layers[0]"}, "input-layers-0--"},
		{"deb", []string{"a", ""}, "deb-a"},
	} {
		got := string(id(tt.kind, tt.parts...))
		if !strings.HasPrefix(got, tt.want) || strings.HasSuffix(tt.want, "-") != (len(got) == len(tt.want)+8) {
			t.Errorf("id(%q, %q) = %q, want %q (with 8 hex digits after a trailing -)", tt.kind, tt.parts, got, tt.want)
		}
	}
}

func TestChecksums(t *testing.T) {
	for _, tt := range []struct {
		digest string
		want   int
	}{
		{sum("ab"), 1},
		{"sha512:" + strings.Repeat("ab", 64), 1},
		{"sha256:" + strings.Repeat("AB", 32), 0},
		{"sha256:abc", 0},
		{"md5:" + strings.Repeat("ab", 16), 0},
		{"", 0},
	} {
		if got := checksums(tt.digest); len(got) != tt.want {
			t.Errorf("checksums(%q) = %v", tt.digest, got)
		}
	}
}

// The SPDX 2.3 JSON schema comes from a pinned module of the Go module
// proxy, checked against its go.sum hash; it is not kept in the repository.
const (
	schemaModule = "github.com/CycloneDX/sbom-utility@v0.18.1"
	schemaSum    = "h1:jw4NqoD6qMf1rth14xzC7s/JaIBpxGKC3RsuduQQ8dg="
	schemaPath   = "resources/schema/spdx/2.3/spdx-schema.json"
)

// spdxSchema compiles the SPDX 2.3 JSON schema. Without go or the module
// proxy the test is skipped, or fails when LABBAKE_REQUIRE_TOOLS is set.
func spdxSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (LABBAKE_REQUIRE_TOOLS=1 fails instead)", args...)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		unavailable("no go to download the SPDX schema with: %v", err)
	}
	cmd := exec.Command(goBin, "mod", "download", "-json", schemaModule)
	cmd.Dir = t.TempDir() // outside the module: nothing is added to go.sum
	out, err := cmd.Output()
	var mod struct{ Dir, Sum, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Error != "" {
		unavailable("go mod download %s: %v %v %s", schemaModule, err, jerr, mod.Error)
	}
	if mod.Sum != schemaSum {
		t.Fatalf("%s has the hash %s, want %s", schemaModule, mod.Sum, schemaSum)
	}
	f, err := os.Open(filepath.Join(mod.Dir, schemaPath))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("spdx-schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("spdx-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSchema(t *testing.T) {
	s := spdxSchema(t)
	// A bare image: no inputs, a package of a status file that says only
	// its name.
	bare := &Image{Lab: "demo", Role: "node", PlanDigest: sum("ef"), File: "node.qcow2", SHA256: strings.Repeat("12", 32), Debs: []dpkg.Package{{Name: "tool", Source: "tool"}}}
	for name, img := range map[string]*Image{"full": testImage(t), "bare": bare} {
		t.Run(name, func(t *testing.T) {
			b, err := Marshal(img)
			if err != nil {
				t.Fatal(err)
			}
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(v); err != nil {
				t.Errorf("not valid SPDX 2.3: %v\n%s", err, b)
			}
		})
	}
	// The schema is strict enough to refuse what it should.
	v, _ := jsonschema.UnmarshalJSON(strings.NewReader(`{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT"}`))
	if s.Validate(v) == nil {
		t.Error("the schema accepts a document without a name, data license or creation info")
	}
}
