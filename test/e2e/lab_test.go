package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/cli"
)

// TestLabUp runs a two-machine lab through the CLI in user mode, without
// root, under TCG: labbake up starts both; each reaches the other's lab
// address over the shared segment (ping through labbake ssh, which uses
// the generated ssh_config and known_hosts: no prompt); status --json is
// right; a file written in one survives down + up; down shuts the guest
// down cleanly (its console shows the power-off); kill -9 makes it
// crashed and up revives it; reset throws its disk away.
func TestLabUp(t *testing.T) {
	if testing.Short() {
		t.Skip("boots two VMs several times (about 8 minutes)")
	}
	requireBootTools(t)
	lab, out, cache := t.TempDir(), t.TempDir(), e2eCache(t)
	write(t, lab, "lab.yaml", "name: e2e-up\nepoch: 1735689600\nnetwork: {mode: user}\nnodes:\n"+
		"  - {name: n1, role: master, ip: 172.18.0.5, memory: 1GiB}\n"+
		"  - {name: n2, role: node, ip: 172.18.0.6, memory: 1GiB}\n")
	write(t, lab, "recipes/master.yaml", "base:\n  debian:\n    suite: trixie\n    packages: ["+strings.Join(basePackages, ", ")+"]\ndisk: {size: 3GiB}\n"+networkdFiles)
	write(t, lab, "recipes/node.yaml", "extends: master\n")
	run := func(args ...string) (string, string, error) {
		var so, se bytes.Buffer
		err := cli.Run(context.Background(), append([]string{"-C", lab, "--cache", cache, "--out", out}, args...), &so, &se, os.Getenv)
		return so.String(), se.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		so, se, err := run(args...)
		if err != nil {
			t.Fatalf("labbake %s: %v\n%s\n%s", strings.Join(args, " "), err, so, tail(se, 30))
		}
		return so
	}
	upFlags := []string{"--network", "user", "--restrict", "--accel", "tcg"}
	machineFlags := []string{"--network", "user"}
	up := func(names ...string) time.Time {
		t.Helper()
		start := time.Now()
		so := must(append(append([]string{"up"}, upFlags...), names...)...)
		t.Logf("up %v in %s: %s", names, time.Since(start).Round(time.Millisecond), strings.TrimSpace(so))
		return start
	}
	t.Cleanup(func() { run(append([]string{"down", "--timeout", "5s"}, machineFlags...)...) })
	// ssh runs a command in a machine through labbake ssh, retrying while
	// the machine boots.
	ssh := func(name string, wait time.Duration, cmd ...string) string {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			so, se, err := run(append(append([]string{"ssh"}, machineFlags...), append([]string{name, "--"}, cmd...)...)...)
			if err == nil {
				return so
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(out, "run", name+".log"))
				t.Fatalf("labbake ssh %s -- %s: %v\n%s\nconsole:\n%s", name, strings.Join(cmd, " "), err, se, tail(string(log), 30))
			}
			time.Sleep(3 * time.Second)
		}
	}

	must("build", "--all")
	start := up()
	ssh("n1", 400*time.Second, "true")
	t.Logf("n1 answered ssh %s after up", time.Since(start).Round(time.Second))
	ssh("n2", 300*time.Second, "true")
	if so := ssh("n1", 60*time.Second, "ping", "-c", "2", "-W", "5", "172.18.0.6"); !strings.Contains(so, "2 received") {
		t.Errorf("n1 cannot reach n2 on the lab segment:\n%s", so)
	}
	if so := ssh("n2", 60*time.Second, "ping", "-c", "2", "-W", "5", "172.18.0.5"); !strings.Contains(so, "2 received") {
		t.Errorf("n2 cannot reach n1 on the lab segment:\n%s", so)
	}
	if so := ssh("n2", 30*time.Second, "hostname"); strings.TrimSpace(so) != "n2" {
		t.Errorf("hostname of n2: %q", so)
	}

	var st []struct {
		Name, State, Accel, Network, Address, MAC string
		PID                                       int
		Ports                                     map[string]int
	}
	if err := json.Unmarshal([]byte(must(append([]string{"status", "--json"}, machineFlags...)...)), &st); err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Name != "n1" || st[0].State != "running" || st[0].Accel != "tcg" || st[0].Network != "user" ||
		st[0].Address != "172.18.0.5" || st[0].MAC != "52:54:eb:79:54:ec" || st[0].PID == 0 || st[0].Ports["ssh"] == 0 || st[0].Ports["api"] == 0 ||
		st[1].State != "running" || st[1].Ports["api"] != 0 {
		t.Errorf("status --json: %+v", st)
	}

	// A file written in n1 survives down and up; the shutdown is clean.
	ssh("n1", 30*time.Second, "echo kept > /root/kept && sync") // one string: ssh hands it to the remote shell
	so := must(append([]string{"down", "n1", "--timeout", "120s"}, machineFlags...)...)
	if !strings.Contains(so, "n1\tshut down in") {
		t.Errorf("down n1: %s", so)
	}
	if log, _ := os.ReadFile(filepath.Join(out, "run", "n1.log")); !strings.Contains(string(log), "reboot: Power down") {
		t.Errorf("n1's console shows no clean power-off:\n%s", tail(string(log), 20))
	}
	start = up("n1")
	if so := ssh("n1", 300*time.Second, "cat", "/root/kept"); strings.TrimSpace(so) != "kept" {
		t.Errorf("/root/kept after down and up: %q", so)
	}
	t.Logf("n1 answered ssh %s after its second up", time.Since(start).Round(time.Second))

	// kill -9: crashed; up revives it.
	syscall.Kill(st[1].PID, syscall.SIGKILL)
	time.Sleep(time.Second)
	if so := must(append([]string{"status", "n2"}, machineFlags...)...); !strings.Contains(so, "crashed") {
		t.Errorf("status after kill -9:\n%s", so)
	}
	if so := must(append([]string{"up", "n2"}, upFlags...)...); !strings.Contains(so, "n2\tstarted") {
		t.Errorf("up after a crash: %s", so)
	}
	ssh("n2", 300*time.Second, "true")

	// reset: a fresh disk.
	must(append([]string{"down", "n1", "--timeout", "120s"}, machineFlags...)...)
	if so := must(append([]string{"reset", "--yes", "n1"}, machineFlags...)...); !strings.Contains(so, "n1\treset") {
		t.Errorf("reset: %s", so)
	}
	up("n1")
	if so := ssh("n1", 400*time.Second, "test -e /root/kept && echo still there || echo gone"); strings.TrimSpace(so) != "gone" {
		t.Errorf("after reset /root/kept is %q", so)
	}
	so = must(append([]string{"down", "--timeout", "120s"}, machineFlags...)...)
	if strings.Count(so, "shut down in") != 2 {
		t.Errorf("down: %s", so)
	}
}
