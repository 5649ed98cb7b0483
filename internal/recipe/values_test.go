package recipe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const valuesLab = `name: vals
vars:
  kubernetes: {version: v1.37.2, url: https://dl.k8s.io}
  cni: calico
  images: [a, b]
  ceph: {pool: rbd}
network: {pod_cidr: 172.19.0.0/16}
nodes:
  - {name: master, role: master, ip: 172.18.0.2}
`

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string // file contents, laid in order
		check  func(t *testing.T, lab *Lab)
		errs   []string // expected problems, FILE named v0.yaml, v1.yaml…
	}{{
		name:   "scalar deep in vars, the rest kept",
		values: []string{"vars:\n  kubernetes: {version: v1.37.3}\n"},
		check: func(t *testing.T, lab *Lab) {
			want := map[string]any{"version": "v1.37.3", "url": "https://dl.k8s.io"}
			if got := lab.Vars["kubernetes"]; !reflect.DeepEqual(got, want) {
				t.Errorf("vars.kubernetes = %v, want %v", got, want)
			}
			if lab.Vars["cni"] != "calico" {
				t.Errorf("vars.cni = %v", lab.Vars["cni"])
			}
		},
	}, {
		name:   "later files win",
		values: []string{"vars: {cni: bridge}\n", "vars: {cni: calico-vxlan}\n"},
		check: func(t *testing.T, lab *Lab) {
			if lab.Vars["cni"] != "calico-vxlan" {
				t.Errorf("vars.cni = %v", lab.Vars["cni"])
			}
		},
	}, {
		name:   "lists replace, null removes, new keys add",
		values: []string{"vars:\n  images: [c]\n  ceph: null\n  extra: {x: 1}\n"},
		check: func(t *testing.T, lab *Lab) {
			if got := lab.Vars["images"]; !reflect.DeepEqual(got, []any{"c"}) {
				t.Errorf("vars.images = %v", got)
			}
			if _, ok := lab.Vars["ceph"]; ok {
				t.Errorf("vars.ceph kept: %v", lab.Vars["ceph"])
			}
			if got := lab.Vars["extra"]; !reflect.DeepEqual(got, map[string]any{"x": 1}) {
				t.Errorf("vars.extra = %v", got)
			}
		},
	}, {
		name:   "network and nodes",
		values: []string{"network: {pod_cidr: 10.244.0.0/16}\nnodes:\n  - {name: cp, role: master, ip: 172.18.0.9}\n  - {name: w, role: node, ip: 172.18.0.10}\n"},
		check: func(t *testing.T, lab *Lab) {
			if lab.Network.PodCIDR != "10.244.0.0/16" {
				t.Errorf("pod_cidr = %s", lab.Network.PodCIDR)
			}
			if len(lab.Nodes) != 2 || lab.Nodes[0].Name != "cp" || lab.Nodes[0].Pos.File != "v0.yaml" || lab.Nodes[0].Pos.Line != 3 {
				t.Errorf("nodes = %+v", lab.Nodes)
			}
		},
	}, {
		name:   "a template, rendered like lab.yaml",
		values: []string{"vars: {cni: {{ \"bridge\" | upper | lower | quote }}}\n"},
		check: func(t *testing.T, lab *Lab) {
			if lab.Vars["cni"] != "bridge" {
				t.Errorf("vars.cni = %v", lab.Vars["cni"])
			}
		},
	}, {
		name:   "empty file changes nothing",
		values: []string{""},
		check: func(t *testing.T, lab *Lab) {
			if lab.Vars["cni"] != "calico" {
				t.Errorf("vars.cni = %v", lab.Vars["cni"])
			}
		},
	}, {
		name:   "unknown keys at their place in the values file",
		values: []string{"vars: {cni: bridge}\nnetwork:\n  pod_cdir: 10.0.0.0/8\nnodez: []\n"},
		errs: []string{
			`v0.yaml:3:3: network.pod_cdir: unknown key "pod_cdir" (did you mean "pod_cidr"?)`,
			`v0.yaml:4:1: nodez: unknown key "nodez" (did you mean "nodes"?)`,
		},
	}, {
		name:   "bad value from the second file",
		values: []string{"vars: {cni: bridge}\n", "\nnetwork: {service_cidr: 10.100.0.1/24}\n"},
		errs:   []string{`v1.yaml:2:25: network.service_cidr: 10.100.0.1/24 has host bits set: use 10.100.0.0/24`},
	}, {
		name:   "network.cni from a values file",
		values: []string{"network: {cni: bridge}\n"},
		check: func(t *testing.T, lab *Lab) {
			if lab.Network.CNI != "bridge" {
				t.Errorf("network.cni = %q", lab.Network.CNI)
			}
		},
	}, {
		name:   "network.cni unknown",
		values: []string{"network: {cni: flannel}\n"},
		errs:   []string{`v0.yaml:1:16: network.cni: cni "flannel": want one of calico, bridge`},
	}, {
		name:   "not a mapping",
		values: []string{"- a\n- b\n"},
		errs:   []string{`v0.yaml:1:1: a values file is a mapping shaped like lab.yaml, got a list`},
	}, {
		name:   "YAML syntax",
		values: []string{"vars: {a: [}\n"},
		errs:   []string{`v0.yaml:1:`},
	}, {
		name:   "duplicate key",
		values: []string{"vars: {}\nvars: {}\n"},
		errs:   []string{`v0.yaml:2:1: vars: duplicate key "vars" (first at line 1)`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLab(t, dir, map[string]string{"lab.yaml": valuesLab})
			// Values paths are as the user gives them: relative to the
			// working directory, here the temp dir's parent-free names.
			t.Chdir(dir)
			var files []string
			for i, v := range tc.values {
				name := "v" + string(rune('0'+i)) + ".yaml"
				if err := os.WriteFile(name, []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
				files = append(files, name)
			}
			lab, err := LoadContext(context.Background(), dir, files...)
			if tc.errs == nil {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, lab)
				return
			}
			checkErr(t, err)
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.errs) {
				t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tc.errs), err)
			}
			for i, want := range tc.errs {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("problem %d = %q, want %q", i, lines[i], want)
				}
			}
		})
	}
}

func TestValuesMissingFile(t *testing.T) {
	dir := t.TempDir()
	writeLab(t, dir, map[string]string{"lab.yaml": valuesLab})
	missing := filepath.Join(dir, "nope.yaml")
	_, err := LoadContext(context.Background(), dir, missing)
	var el ErrorList
	if !errors.As(err, &el) || len(el) != 1 || el[0].Pos.File != missing || !strings.Contains(err.Error(), "no such values file") {
		t.Fatalf("LoadContext with a missing values file = %v", err)
	}
}

// TestValuesDigest: the lab digest is lab.yaml's alone without values, and
// changes with each values file's content, not with its name.
func TestValuesDigest(t *testing.T) {
	dir := t.TempDir()
	writeLab(t, dir, map[string]string{
		"lab.yaml": valuesLab,
		"a.yaml":   "vars: {cni: bridge}\n",
		"b.yaml":   "vars: {cni: bridge}\n",
		"c.yaml":   "vars: {cni: calico}\n",
		"e.yaml":   "",
	})
	digest := func(values ...string) string {
		t.Helper()
		var files []string
		for _, v := range values {
			files = append(files, filepath.Join(dir, v))
		}
		lab, err := LoadContext(context.Background(), dir, files...)
		if err != nil {
			t.Fatal(err)
		}
		return lab.Digest
	}
	plain := digest()
	if plain != "sha256:"+sha256Hex([]byte(valuesLab)) {
		t.Errorf("digest without values = %s", plain)
	}
	if a, b := digest("a.yaml"), digest("b.yaml"); a != b || a == plain {
		t.Errorf("same values under two names: %s %s (plain %s)", a, b, plain)
	}
	if digest("a.yaml") == digest("c.yaml") {
		t.Error("different values, same digest")
	}
	if digest("e.yaml") == plain {
		t.Error("an empty values file leaves no trace in the digest")
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// FuzzValues: any values file laid over a valid lab loads or fails with
// problems that each carry a full position.
func FuzzValues(f *testing.F) {
	f.Add([]byte("vars:\n  kubernetes: {version: v1.37.3}\n"))
	f.Add([]byte("vars: {ceph: null}\nnodes: []\n"))
	f.Add([]byte("network:\n  pod_cdir: 10.0.0.0/8\n"))
	f.Add([]byte("- a\n"))
	f.Add([]byte("{{ range until 3 }}a{{ . }}: 1\n{{ end }}"))
	f.Add([]byte("vars: &a {x: 1}\nnetwork: *a\n"))
	f.Fuzz(func(t *testing.T, values []byte) {
		dir := t.TempDir()
		writeLab(t, dir, map[string]string{"lab.yaml": valuesLab, "v.yaml": string(values)})
		_, err := LoadContext(context.Background(), dir, filepath.Join(dir, "v.yaml"))
		checkErr(t, err)
	})
}
