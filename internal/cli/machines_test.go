package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// machineLab writes a lab of two machines whose images are not built.
func machineLab(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range map[string]string{
		"lab.yaml":            "name: m\nnodes:\n  - {name: master, role: master, ip: 172.18.0.2}\n  - {name: n1, role: node, ip: 172.18.0.3}\n",
		"recipes/master.yaml": "base: {dir: root}\ndisk: {boot: []}\n",
		"recipes/node.yaml":   "extends: master\n",
		"root/etc/hostname":   "x\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestMachineVerbs: the machine verbs' usage errors exit 2 and say what to
// run; status of a lab never started says stopped.
func TestMachineVerbs(t *testing.T) {
	lab := machineLab(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"up", "--network", "user"}, 2, "run labbake build master"},
		{[]string{"up", "nosuch", "--network", "user"}, 2, `no machine "nosuch"`},
		{[]string{"up", "--network", "token-ring"}, 2, "want auto, bridge or user"},
		{[]string{"status", "--network", "user"}, 0, "stopped"},
		{[]string{"down", "--network", "user"}, 0, "not running"},
		{[]string{"ssh", "--network", "user"}, 2, "name a machine"},
		{[]string{"ssh", "--network", "user", "n1", "--", "true"}, 2, "labbake up writes it"},
		{[]string{"console", "--network", "user", "n1"}, 1, "not running"},
		{[]string{"reset", "--network", "user"}, 2, "name the machines"},
		{[]string{"reset", "--yes", "--network", "user", "n1"}, 0, "no disk to reset"},
		{[]string{"seed", "nosuch"}, 2, `no machine "nosuch"`},
		{[]string{"seed"}, 2, "or give --all"},
		{[]string{"pki", "renew"}, 2, "labbake seed --all makes it"},
		{[]string{"test", "master", "--ssh-port", "2222"}, 2, "--ssh-port needs --node"},
	} {
		so, se, code := run(t, append([]string{"-C", lab}, tc.args...)...)
		if code != tc.code || !strings.Contains(so+se, tc.want) {
			t.Errorf("labbake %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.code, tc.want, so, se)
		}
	}
}

// TestResetAsks: reset asks before discarding a disk, and keeps it unless
// the answer is yes; --yes skips the question.
func TestResetAsks(t *testing.T) {
	lab := machineLab(t)
	overlay := filepath.Join(lab, "output", "run", "n1.qcow2")
	if err := os.MkdirAll(filepath.Dir(overlay), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(overlay, []byte("disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	withStdin := func(input string) (string, string, int) {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString(input)
		w.Close()
		old := os.Stdin
		os.Stdin = r
		defer func() { os.Stdin = old; r.Close() }()
		return run(t, "-C", lab, "reset", "--network", "user", "n1")
	}
	for _, answer := range []string{"", "n\n", "no\n", "yes please\n"} {
		so, se, code := withStdin(answer)
		if code != 2 || !strings.Contains(se, "discard the disks of n1? [y/N]") || !strings.Contains(se, "not reset (give --yes") {
			t.Errorf("answer %q: exit %d\nstdout: %s\nstderr: %s", answer, code, so, se)
		}
		if _, err := os.Stat(overlay); err != nil {
			t.Fatalf("answer %q: the disk is gone: %v", answer, err)
		}
	}
	if so, se, code := withStdin("y\n"); code != 0 || !strings.Contains(so, "n1\treset") {
		t.Errorf("answer y: exit %d\nstdout: %s\nstderr: %s", code, so, se)
	}
	if _, err := os.Stat(overlay); !os.IsNotExist(err) {
		t.Errorf("answer y left the disk: %v", err)
	}
	os.WriteFile(overlay, []byte("disk"), 0o644)
	if so, se, code := run(t, "-C", lab, "reset", "--yes", "--network", "user", "n1"); code != 0 || !strings.Contains(so, "n1\treset") || strings.Contains(se, "[y/N]") {
		t.Errorf("--yes: exit %d\nstdout: %s\nstderr: %s", code, so, se)
	}
}

// TestMachineVerbsQuick: status, status --json and down of a lab of three
// machines that do not run answer within a second (issue 11 asks that of
// up, down and status; booting is QEMU's time, not labbake's). Each takes
// a few ms here; the bound leaves room for a loaded machine. up needs
// built images: the e2e tests log its time.
func TestMachineVerbsQuick(t *testing.T) {
	lab := machineLab(t)
	if err := os.WriteFile(filepath.Join(lab, "lab.yaml"), []byte("name: m\nnodes:\n"+
		"  - {name: master, role: master, ip: 172.18.0.2}\n  - {name: n1, role: node, ip: 172.18.0.3}\n"+
		"  - {name: n2, role: node, ip: 172.18.0.4}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "-C", lab, "status", "--network", "user") // the first run picks the ports
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"down"}} {
		start := time.Now()
		so, se, code := run(t, append([]string{"-C", lab}, append(args, "--network", "user")...)...)
		took := time.Since(start)
		if code != 0 || strings.Count(so, "n2") != 1 {
			t.Errorf("labbake %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, so, se)
		}
		t.Logf("labbake %s: %s", strings.Join(args, " "), took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("labbake %s took %s, want under 1 s", strings.Join(args, " "), took)
		}
	}
}
