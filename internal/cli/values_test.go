package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// --values lays files over lab.yaml for every verb that loads the lab: the
// rendered recipe shows the overridden var, later files win, and a bad key
// in a values file fails with exit 2 at its place in that file.
func TestValuesFlag(t *testing.T) {
	lab := t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":            "name: t\nvars: {motd: shipped, cni: calico}\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"rootfs.tar":          "",
		"recipes/master.yaml": "base: {tar: rootfs.tar}\nfiles:\n  - {path: /etc/motd, content: \"{{ .vars.motd }} {{ .vars.cni }}\"}\n",
	})
	a := filepath.Join(lab, "a.yaml")
	b := filepath.Join(lab, "b.yaml")
	bad := filepath.Join(lab, "bad.yaml")
	writeFiles(t, lab, map[string]string{
		"a.yaml":   "vars: {motd: from-a, cni: bridge}\n",
		"b.yaml":   "vars: {motd: from-b}\n",
		"bad.yaml": "vars: {motd: x}\nnetwrok: {}\n",
	})
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"none", []string{"render", "master"}, 0, `content: "shipped calico"`},
		{"one", []string{"--values", a, "render", "master"}, 0, `content: "from-a bridge"`},
		{"two, later wins", []string{"--values", a, "--values", b, "render", "master"}, 0, `content: "from-b bridge"`},
		{"bad key", []string{"--values", bad, "render", "master"}, 2, bad + ":2:1: netwrok: unknown key"},
		{"missing", []string{"--values", filepath.Join(lab, "none.yaml"), "plan", "master"}, 2, "no such values file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, append([]string{"-C", lab}, tc.args...)...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.out) {
				t.Errorf("exit %d (want %d), output lacks %q\nstdout: %s\nstderr: %s", code, tc.code, tc.out, stdout, stderr)
			}
		})
	}
}
