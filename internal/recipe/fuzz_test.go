package recipe

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// checkErr asserts err is nil or an ErrorList whose every Error has a file
// and a line and column from 1.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var el ErrorList
	if !errors.As(err, &el) {
		t.Fatalf("error %T is not an ErrorList: %v", err, err)
	}
	if len(el) == 0 {
		t.Fatal("empty ErrorList")
	}
	for _, e := range el {
		if e.Pos.File == "" || e.Pos.Line < 1 || e.Pos.Col < 1 {
			t.Fatalf("error without a full position: %q (%+v)", e.Error(), e.Pos)
		}
	}
}

// fuzzLab is a valid lab whose recipes/master.yaml the fuzzer writes.
func fuzzLab(t testing.TB, dir string) {
	writeLab(t, dir, map[string]string{
		"lab.yaml":                   "name: fuzz\nvars: {v: 1, list: [a, b]}\nnodes:\n  - {name: master, role: master, ip: 172.18.0.2}\n  - {name: n1, role: node, ip: 172.18.0.3}\n",
		"rootfs.tar":                 "x",
		"recipes/common.yaml":        "base: {tar: rootfs.tar}\nfiles:\n  - {path: /etc/a, content: a}\n",
		"units/a.service":            "[Unit]\n",
		"units/b.service.tmpl":       "{{ .role }}\n",
		"overlays/o/etc/x.conf.tmpl": "{{ .lab.name }}\n",
	})
}

func seedRecipes(f *testing.F) {
	f.Helper()
	for _, p := range []string{"testdata/good/recipes/common.yaml", "testdata/good/recipes/master.yaml", "testdata/good/recipes/node.yaml", "testdata/good/recipes/remote.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	entries, _ := filepath.Glob("testdata/broken/*/recipes/*.yaml")
	for _, p := range entries {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("extends: common\nunits: [{name: a.service, enable: true}, {name: b.service}]\noverlays: [o]\ndisk: {size: 1GiB}\n"))
	f.Add([]byte("base: {tar: rootfs.tar}\nfiles:\n{{- range until 3 }}\n  - path: /f{{ . }}\n    content: {{ . | quote }}\n{{- end }}\n"))
	f.Add([]byte("base: {tar: rootfs.tar}\nartifacts:\n  - {file: rootfs.tar, dest: /usr/local/bin/x, capabilities: [net_bind_service, CAP_NET_RAW]}\n  - {file: rootfs.tar, dest: /usr/local/bin/y, capabilities: [cap_chown, CHOWN]}\n"))
	f.Add([]byte("a: &x 1\nb: *x\n"))
	f.Add([]byte("extends: master\n"))
	f.Add([]byte("---\n---\nfoo\n"))
}

func FuzzLoad(f *testing.F) {
	seedRecipes(f)
	dir := f.TempDir()
	fuzzLab(f, dir)
	master := filepath.Join(dir, "recipes", "master.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(master, data, 0o644); err != nil {
			t.Fatal(err)
		}
		lab, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := lab.Recipe("master")
		checkErr(t, err)
		if err == nil && len(r.Rendered) == 0 {
			t.Fatal("empty Rendered")
		}
	})
}

func FuzzLab(f *testing.F) {
	for _, p := range []string{"testdata/good/lab.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	entries, _ := filepath.Glob("testdata/broken/*/lab.yaml")
	for _, p := range entries {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("name: x\nnetwork: {cidr: 10.0.0.0/8, gateway: 10.0.0.1, pod_cidr: 10.0.0.0/16}\nnodes: [{name: a, role: master, ip: 10.1.2.3, cpus: 0, memory: 1T}]\n"))
	f.Add([]byte("name: x\nnodes: [{name: a, role: master, ip: 172.18.0.2}, {name: b, role: node, ip: 172.18.0.3}]\n" +
		"seed_files:\n  - {path: /etc/k, file: lab.yaml, roles: [master], nodes: [b], mode: \"0400\"}\n  - {path: /etc/k, file: recipes, nodes: [a]}\n"))
	dir := f.TempDir()
	fuzzLab(f, dir)
	labFile := filepath.Join(dir, "lab.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(labFile, data, 0o644); err != nil {
			t.Fatal(err)
		}
		lab, err := Load(dir)
		checkErr(t, err)
		if err != nil {
			return
		}
		_, err = lab.ReadSeedFiles(nil)
		checkErr(t, err)
		for _, role := range lab.Roles() {
			_, err := lab.Recipe(role)
			if err != nil {
				var el ErrorList
				if !errors.As(err, &el) {
					t.Fatalf("Recipe error %T is not an ErrorList", err)
				}
			}
		}
	})
}
