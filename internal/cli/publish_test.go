package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// publish refuses, exit 2 and one line, before any registry is reached:
// no --to, a bad --format, several roles without {role}, a role not
// baked, and an output that resolves under OUT/pki or OUT/seed.
func TestPublishRefuses(t *testing.T) {
	lab := t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":            "name: t\nnodes:\n  - {name: m, role: master, ip: 172.18.0.2}\n",
		"recipes/master.yaml": "disk: {size: 300MiB, boot: []}\n",
	})
	out := filepath.Join(lab, "output")
	for _, d := range []string{"pki", "seed"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, "pki", "ca.key"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("pki", "ca.key"), filepath.Join(out, "leak.qcow2")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"publish", "master"}, "--to REPO[:TAG]"},
		{[]string{"publish", "master", "--to", "127.0.0.1:1/x", "--format", "tarball"}, `format "tarball"`},
		{[]string{"publish", "master", "leak", "--to", "127.0.0.1:1/x:v1"}, "need {role}"},
		{[]string{"publish", "master", "--to", "127.0.0.1:1/x:v1"}, "labbake build master first"},
		{[]string{"publish", "leak", "--to", "127.0.0.1:1/x:v1"}, "holds the lab's keys"},
		{[]string{"pull"}, "accepts 1 arg"},
	} {
		stdout, stderr, code := run(t, append([]string{"-C", lab}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("labbake %s: exit %d, stderr %q, want exit 2 and one line with %q (stdout %q)", strings.Join(tc.args, " "), code, stderr, tc.want, stdout)
		}
	}
}
