package bake

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/builders/seed"
	"github.com/labbake/labbake/internal/golden"
	"github.com/labbake/labbake/internal/pki"
	"github.com/labbake/labbake/internal/recipe"
)

// seedFilesLab writes a lab of a master and two nodes whose seed_files
// (from line 7 of lab.yaml) are entries, with the given lab dir files.
func seedFilesLab(t *testing.T, entries string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files["lab.yaml"] = "name: t\nnodes:\n" +
		"  - {name: master, role: master, ip: 172.18.0.2}\n" +
		"  - {name: node-one, role: node, ip: 172.18.0.3}\n" +
		"  - {name: node-two, role: node, ip: 172.18.0.4}\n" +
		"seed_files:\n" + entries
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeFiles are the write_files entries of a user-data, as YAML nodes
// (their scalars keep the style the seed wrote them in).
func writeFiles(t *testing.T, userData []byte) []*yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(userData, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "write_files" {
			return root.Content[i+1].Content
		}
	}
	return nil
}

func entryValue(e *yaml.Node, key string) string {
	for i := 0; i+1 < len(e.Content); i += 2 {
		if e.Content[i].Value == key {
			return e.Content[i+1].Value
		}
	}
	return ""
}

// TestSeedFilesInUserData: each machine's user-data writes exactly the
// seed files lab.yaml gives it, after the seed's own files, base64
// encoded, owned by root with their modes; the golden file holds the
// master's seed_files entries as the seed writes them.
func TestSeedFilesInUserData(t *testing.T) {
	dir := seedFilesLab(t,
		"  - {path: /etc/kubernetes/ceph/userKey, file: secrets/ceph-user.key, roles: [master]}\n"+
			"  - {path: /etc/app/token, file: secrets/token, mode: \"0440\"}\n"+
			"  - {path: /etc/app/node.bin, file: secrets/node.bin, nodes: [node-two], mode: \"0400\"}\n",
		map[string]string{
			"secrets/ceph-user.key": "AQBAz2Rn9nYbIBAAnq5xVxZ1X1m0Qf4Cq6V3cA==\n",
			"secrets/token":         "registry-token: s3cr3t\n",
			"secrets/node.bin":      "\x00\x01\xfe\xff: not yaml\n",
		})
	lab, err := recipe.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := lab.ReadSeedFiles(nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := PKISpec(lab, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pki.Ensure(filepath.Join(t.TempDir(), "pki"), spec)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"master":   {"/etc/kubernetes/ceph/userKey", "/etc/app/token"},
		"node-one": {"/etc/app/token"},
		"node-two": {"/etc/app/token", "/etc/app/node.bin"},
	}
	modes := map[string]string{"/etc/kubernetes/ceph/userKey": "0600", "/etc/app/token": "0440", "/etc/app/node.bin": "0400"}
	sources := map[string]string{"/etc/kubernetes/ceph/userKey": "secrets/ceph-user.key", "/etc/app/token": "secrets/token", "/etc/app/node.bin": "secrets/node.bin"}
	for _, n := range lab.Nodes {
		m, err := seedMachine(lab, n, p, extra[n.Name])
		if err != nil {
			t.Fatal(err)
		}
		s, err := seed.Render(m)
		if err != nil {
			t.Fatal(err)
		}
		entries := writeFiles(t, s.UserData)
		var own []*yaml.Node
		for _, e := range entries {
			if _, ok := modes[entryValue(e, "path")]; ok {
				own = append(own, e)
			}
		}
		if len(entries) < len(own)+2 || !slices.Equal(entries[len(entries)-len(own):], own) {
			t.Errorf("%s: the seed files are not the last of write_files", n.Name)
		}
		if entryValue(entries[len(entries)-len(own)-1], "path") != "/etc/network-environment" {
			t.Errorf("%s: /etc/network-environment does not come right before the seed files", n.Name)
		}
		var paths []string
		for _, e := range own {
			path := entryValue(e, "path")
			paths = append(paths, path)
			content, err := base64.StdEncoding.DecodeString(entryValue(e, "content"))
			if err != nil {
				t.Fatalf("%s %s: %v", n.Name, path, err)
			}
			src, _ := os.ReadFile(filepath.Join(dir, sources[path]))
			if !bytes.Equal(content, src) {
				t.Errorf("%s %s: content %q, want %q", n.Name, path, content, src)
			}
			if got := [3]string{entryValue(e, "encoding"), entryValue(e, "owner"), entryValue(e, "permissions")}; got != [3]string{"b64", "root:root", modes[path]} {
				t.Errorf("%s %s: encoding, owner, permissions %q", n.Name, path, got)
			}
		}
		if !slices.Equal(paths, want[n.Name]) {
			t.Errorf("%s: seed files %v, want %v", n.Name, paths, want[n.Name])
		}
		if n.Name == "master" {
			var b bytes.Buffer
			enc := yaml.NewEncoder(&b)
			enc.SetIndent(2)
			if err := enc.Encode(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
				{Kind: yaml.ScalarNode, Value: "write_files"},
				{Kind: yaml.SequenceNode, Content: own},
			}}); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "seedfiles", "master-write_files.yaml"), b.Bytes())
		}
	}
}

// TestSeedsWithSeedFiles through Seeds: same inputs, same ISOs; a seed
// file's new content changes the seeds (and instance-ids) of the machines
// that get it and only theirs; a missing file or one at a path the seed
// writes itself is a positioned error and writes nothing.
func TestSeedsWithSeedFiles(t *testing.T) {
	dir := seedFilesLab(t,
		"  - {path: /etc/kubernetes/ceph/userKey, file: secrets/ceph-user.key, roles: [master]}\n",
		map[string]string{"secrets/ceph-user.key": "AQBAz2Rn9nYbIBAAnq5xVxZ1X1m0Qf4Cq6V3cA==\n"})
	lab, err := recipe.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	opts := SeedOptions{OutDir: out, SourceDateEpoch: "1700000000", Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	run := func() (map[string][]byte, map[string]string) {
		t.Helper()
		res, err := Seeds(context.Background(), lab, nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		isos, ids := map[string][]byte{}, map[string]string{}
		for _, r := range res {
			isos[r.Node], _ = os.ReadFile(r.Path)
			ids[r.Node] = r.InstanceID
		}
		return isos, ids
	}
	isos1, ids1 := run()
	if !bytes.Contains(isos1["master"], []byte(base64.StdEncoding.EncodeToString([]byte("AQBAz2Rn9nYbIBAAnq5xVxZ1X1m0Qf4Cq6V3cA==\n")))) {
		t.Error("the master's seed does not carry the key")
	}
	if bytes.Contains(isos1["node-one"], []byte("/etc/kubernetes/ceph/userKey")) {
		t.Error("node-one's seed carries the key")
	}
	isos2, ids2 := run()
	for name := range isos1 {
		if !bytes.Equal(isos1[name], isos2[name]) || ids1[name] != ids2[name] {
			t.Errorf("%s: two runs on the same inputs differ", name)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets/ceph-user.key"), []byte("AQCnewkey==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	isos3, ids3 := run()
	for name := range isos1 {
		changed := ids3[name] != ids1[name]
		if changed != (name == "master") || bytes.Equal(isos3[name], isos1[name]) == (name == "master") {
			t.Errorf("%s: new key content: instance-id changed %v, seed changed %v", name, changed, !bytes.Equal(isos3[name], isos1[name]))
		}
	}

	for _, tc := range []struct {
		name, entries string
		want          string
	}{
		{"missing", "  - {path: /etc/app/key, file: secrets/missing.key, nodes: [node-one]}\n",
			"lab.yaml:7:32: seed_files[0].file: secrets/missing.key not found (it is read when seeds are written)"},
		{"the seed's own network environment", "  - {path: /etc/network-environment, file: f}\n",
			"lab.yaml:7:12: seed_files[0].path: /etc/network-environment is a file the seed of master writes itself (its certificates, kubeconfigs, /etc/network-environment)"},
		{"a PKI file", "  - {path: /etc/kubernetes/pki/ca.crt, file: f, nodes: [node-two]}\n",
			"lab.yaml:7:12: seed_files[0].path: /etc/kubernetes/pki/ca.crt is a file the seed of node-two writes itself (its certificates, kubeconfigs, /etc/network-environment)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab, err := recipe.Load(seedFilesLab(t, tc.entries, map[string]string{"f": "x"}))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			_, err = Seeds(context.Background(), lab, nil, SeedOptions{OutDir: out, Now: opts.Now})
			var el recipe.ErrorList
			if !errors.As(err, &el) || len(el) != 1 || el[0].Error() != tc.want {
				t.Fatalf("Seeds: %v, want the one error %s", err, tc.want)
			}
			if !IsInputError(err) {
				t.Error("not an input error (exit 2)")
			}
			if seeds, _ := os.ReadDir(filepath.Join(out, SeedDir)); len(seeds) > 0 || strings.Contains(tc.name, "missing") && exists(out) {
				t.Errorf("written: seeds %v, output dir %v", seeds, exists(out))
			}
		})
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// RenderSeeds gives the documents Seeds puts on the ISOs, and writes no
// seed.
func TestRenderSeedsAreTheISOs(t *testing.T) {
	dir := seedFilesLab(t,
		"  - {path: /etc/app/token, file: secrets/token, roles: [node]}\n",
		map[string]string{"secrets/token": "t0ken\n"})
	lab, err := recipe.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	opts := SeedOptions{OutDir: out, SourceDateEpoch: "1700000000", Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	docs, err := RenderSeeds(context.Background(), lab, []string{"node-two", "master"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Node != "node-two" || docs[1].Node != "master" {
		t.Fatalf("rendered %v", docs)
	}
	if exists(filepath.Join(out, SeedDir)) {
		t.Error("RenderSeeds wrote seeds")
	}
	res, err := Seeds(context.Background(), lab, []string{"node-two", "master"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		iso, err := os.ReadFile(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		d := docs[i]
		// The instance id hashes user-data and network-config.
		if d.Node != r.Node || d.Seed.InstanceID != r.InstanceID ||
			!bytes.Contains(iso, d.Seed.UserData) || !bytes.Contains(iso, d.Seed.NetworkConfig) {
			t.Errorf("%s: the rendered seed is not the one on the ISO", r.Node)
		}
	}
}
