package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), args, &stdout, &stderr, func(string) string { return "" })
	if err != nil {
		stderr.WriteString(Message(err))
	}
	return stdout.String(), stderr.String(), ExitCode(err)
}

func TestExitCodes(t *testing.T) {
	lab := t.TempDir()
	os.WriteFile(filepath.Join(lab, "lab.yaml"), []byte("name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // substring of stdout+stderr
	}{
		{"version", []string{"version"}, 0, "labbake "},
		{"unknown verb", []string{"frobnicate"}, 2, "unknown command"},
		{"unknown flag", []string{"build", "--nope"}, 2, "unknown flag"},
		{"no role", []string{"-C", lab, "build"}, 2, "name a role"},
		{"roles and all", []string{"-C", lab, "build", "--all", "master"}, 2, "not both"},
		{"all with a missing recipe", []string{"-C", lab, "build", "--all"}, 2, "recipes/master.yaml"},
		{"unknown role", []string{"-C", lab, "render", "master"}, 2, "recipes/master.yaml"},
		{"no lab", []string{"-C", filepath.Join(lab, "missing"), "plan", "master"}, 2, "lab.yaml"},
		{"bad log format", []string{"-C", lab, "--log-format", "xml", "build", "master"}, 2, "--log-format"},
		{"plan needs a role", []string{"-C", lab, "plan"}, 2, "name a role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if !strings.Contains(stdout+stderr, tc.out) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tc.out, stdout, stderr)
			}
		})
	}
}

// Every verb explains itself with an example.
func TestHelpHasExamples(t *testing.T) {
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" })
	for _, c := range append(root.Commands(), root) {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if c.Example == "" || c.Short == "" {
			t.Errorf("%s: no example or short help", c.Name())
		}
	}
}
