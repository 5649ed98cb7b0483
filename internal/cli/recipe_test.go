package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFiles makes a lab dir from name → content; a content starting with
// "->" makes a symbolic link to the rest.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Bad recipes of issue 9 fail as the user sees them: exit 2, the problem at
// its FILE:LINE:COL, and nothing written into the output dir.
func TestRecipeProblems(t *testing.T) {
	const lab = "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		args  []string
		want  string
	}{
		{"file artifact outside the lab", map[string]string{
			"recipes/master.yaml": "base: {tar: rootfs.tar}\nartifacts:\n  - {file: /etc/passwd, dest: /x}\n  - {file: secret, dest: /y}\n",
			"secret":              "->/etc/passwd"},
			[]string{"build", "master"},
			"recipes/master.yaml:3:12: artifacts[0].file: file /etc/passwd is an absolute path (paths in a recipe are relative to the lab dir and stay inside it)\n" +
				"recipes/master.yaml:4:12: artifacts[1].file: file secret leads outside the lab dir through a symbolic link"},
		{"overlay symlinked out", map[string]string{
			"recipes/master.yaml": "base: {tar: rootfs.tar}\noverlays: [etc]\n", "overlays/etc": "->/etc"},
			[]string{"build", "master"}, "recipes/master.yaml:2:12: overlays[0]: overlay directory overlays/etc leads outside the lab dir through a symbolic link"},
		{"disk below the builder's minimum", map[string]string{"recipes/master.yaml": "base: {tar: rootfs.tar}\ndisk: {size: 64MiB}\n"},
			[]string{"build", "master"}, "recipes/master.yaml:2:14: disk.size: size 64MiB is too small: the minimum is 235MiB"},
		{"unit without a type suffix", map[string]string{"recipes/master.yaml": "base: {tar: rootfs.tar}\nunits: [{name: etcd}]\n", "units/etcd": "[Unit]\n"},
			[]string{"build", "master"}, `recipes/master.yaml:2:16: units[0].name: unit name "etcd" has no unit type suffix`},
		{"broadcast node address", map[string]string{
			"lab.yaml":            "name: t\nnodes: [{name: m, role: master, ip: 172.18.255.255}]\n",
			"recipes/master.yaml": "base: {tar: rootfs.tar}\n"},
			[]string{"build", "master"}, "lab.yaml:2:37: nodes[0].ip: ip 172.18.255.255 is the broadcast address of network.cidr 172.18.0.0/16"},
		{"non-UTF-8 recipe", map[string]string{"recipes/master.yaml": "base: {tar: rootfs.tar}\nfiles:\n  - {path: /a, content: \"caf\xe9\"}\n"},
			[]string{"render", "master"}, "recipes/master.yaml:3:29: invalid UTF-8 (byte 0xE9): save the file as UTF-8"},
		{"UTF-16 lab", map[string]string{"lab.yaml": "\xff\xfen\x00a\x00m\x00e\x00:\x00 \x00t\x00\n\x00", "recipes/master.yaml": "base: {tar: rootfs.tar}\n"},
			[]string{"render", "master"}, "lab.yaml:1:1: the file is UTF-16 (it starts with a byte order mark): labbake reads UTF-8, save it as UTF-8"},
		{"too many entries", map[string]string{"recipes/master.yaml": "base: {tar: rootfs.tar}\nchecks:\n  files:\n" + strings.Repeat("    - /x\n", 10001)},
			[]string{"build", "master"}, "recipes/master.yaml:4:5: checks.files: 10001 entries: a recipe may hold at most 10000"},
		{"endless template", map[string]string{"recipes/master.yaml": "base: {tar: rootfs.tar}\n{{ range 1000000000000 }}{{ end }}\n"},
			[]string{"build", "master"}, "recipes/master.yaml:2:10: template: more than 4194304 template steps"},
		{"test without a role", map[string]string{"recipes/master.yaml": "base: {tar: rootfs.tar}\n"},
			[]string{"test"}, "accepts 1 arg(s), received 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"lab.yaml": lab, "rootfs.tar": string(make([]byte, 1024))}
			for k, v := range tc.files {
				files[k] = v
			}
			writeFiles(t, dir, files)
			out := filepath.Join(dir, "output")
			args := append([]string{"-C", dir, "--cache", filepath.Join(dir, "cache")}, tc.args...)
			stdout, stderr, code := run(t, args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want 2 and %q\nstdout: %s\nstderr: %s", code, tc.want, stdout, stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the output dir was created: %v", err)
			}
		})
	}
}

// Ctrl-C (the command's context) stops a template that would run for
// seconds at once, and is not reported as a problem of the lab.
func TestRenderInterrupted(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"lab.yaml":            "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": "base: {tar: rootfs.tar}\n{{ range 1000000000000 }}{{ end }}\n",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var stdout, stderr strings.Builder
	start := time.Now()
	err := Run(ctx, []string{"-C", dir, "render", "master"}, &stdout, &stderr, func(string) string { return "" })
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v after the context ended", took)
	}
	if err == nil || ExitCode(err) != 1 || !strings.Contains(Message(err), "context deadline exceeded") {
		t.Errorf("Run = %v (exit %d)", err, ExitCode(err))
	}
}

// A dir: base and an overlay that are symlinks to directories inside the
// lab dir bring their files into the image (issue 9, item 3: they
// contributed nothing, exit 0), templates of the overlay rendered.
func TestSymlinkedDirsReachTheImage(t *testing.T) {
	requireTool(t, "mke2fs")
	requireTool(t, "debugfs")
	lab := t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":                   "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml":        "base: {dir: rootlink}\noverlays: [ov]\ndisk: {size: 300MiB, boot: []}\n",
		"trees/root/etc/hostname":    "from-base\n",
		"trees/root/usr/share/x/big": strings.Repeat("labbake", 100),
		"trees/ov/etc/motd.tmpl":     "role {{ .role }}\n",
		"trees/ov/etc/plain":         "from-overlay\n",
		"rootlink":                   "->trees/root",
		"overlays/ov":                "->../trees/ov",
	})
	out := t.TempDir()
	stdout, stderr, code := run(t, "-C", lab, "--cache", t.TempDir(), "--out", out, "build", "master", "--keep-raw")
	if code != 0 {
		t.Fatalf("build: exit %d\n%s%s", code, stdout, stderr)
	}
	var m struct{ Partitions []struct{ Offset int64 } }
	b, err := os.ReadFile(filepath.Join(out, "master.manifest.json"))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil || len(m.Partitions) == 0 {
		t.Fatalf("manifest: %v\n%s", err, b)
	}
	dev := fmt.Sprintf("%s?offset=%d", filepath.Join(out, "master.raw"), m.Partitions[len(m.Partitions)-1].Offset)
	for p, want := range map[string]string{
		"/etc/hostname":    "from-base\n",
		"/usr/share/x/big": strings.Repeat("labbake", 100),
		"/etc/motd":        "role master\n",
		"/etc/plain":       "from-overlay\n",
	} {
		got, err := exec.Command("debugfs", "-R", "cat "+p, dev).Output()
		if err != nil || string(got) != want {
			t.Errorf("%s in the image: %q, %v; want %q", p, got, err, want)
		}
	}
}
