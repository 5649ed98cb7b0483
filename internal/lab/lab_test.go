package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/kit"
	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/recipe"
)

func testLab(t *testing.T) *recipe.Lab {
	t.Helper()
	dir := t.TempDir()
	for p, c := range map[string]string{
		"lab.yaml":            "name: t\nnodes:\n  - {name: master, role: master, ip: 172.18.0.2}\n  - {name: n1, role: node, ip: 172.18.0.3, cpus: 1, memory: 512MiB}\n",
		"recipes/master.yaml": "base: {dir: root}\ndisk: {boot: []}\n",
		"recipes/node.yaml":   "extends: master\n",
		"root/etc/hostname":   "x\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := recipe.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestOpenUserMode: ports are chosen once and kept, the segment is the
// lab's own, the machines' files live under OUT, and Check names what to
// run when images and seeds are missing.
func TestOpenUserMode(t *testing.T) {
	l := testLab(t)
	out := t.TempDir()
	opts := Options{OutDir: out, Network: kit.ModeUser}
	a, err := Open(context.Background(), l, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), l, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode != kit.ModeUser || a.Accel != kit.AccelTCG {
		t.Errorf("mode %s accel %s", a.Mode, a.Accel)
	}
	ma, mb := a.Kit.Machines, b.Kit.Machines
	if len(ma) != 2 || ma[0].SSHPort == 0 || ma[0].SSHPort != mb[0].SSHPort || ma[1].SSHPort != mb[1].SSHPort || ma[0].SSHPort == ma[1].SSHPort {
		t.Errorf("ports not chosen once and kept: %+v / %+v", ma, mb)
	}
	if len(ma[0].Forwards) != 1 || ma[0].Forwards[0].GuestPort != APIPort || len(ma[1].Forwards) != 0 {
		t.Errorf("only the control plane forwards the API: %+v", ma)
	}
	if ma[1].CPUs != 1 || ma[1].MemoryMiB != 512 || ma[1].Image != filepath.Join(out, "node.qcow2") || ma[1].Seed != filepath.Join(out, "seed", "n1.iso") {
		t.Errorf("machine n1: %+v", ma[1])
	}
	if a.Kit.Network.McastGroup != b.Kit.Network.McastGroup || !strings.HasPrefix(a.Kit.Network.McastGroup, "239.255.") {
		t.Errorf("segment %q / %q", a.Kit.Network.McastGroup, b.Kit.Network.McastGroup)
	}
	other, err := Open(context.Background(), l, Options{OutDir: t.TempDir(), Network: kit.ModeUser})
	if err != nil {
		t.Fatal(err)
	}
	if other.Kit.Network.McastGroup == a.Kit.Network.McastGroup {
		t.Error("two output dirs of one lab share a segment")
	}
	if server, ok := a.APIServer(); !ok || !strings.HasPrefix(server, "https://127.0.0.1:") {
		t.Errorf("API server %q", server)
	}
	err = a.Check([]string{"master", "n1"})
	for _, want := range []string{"run labbake build master", "run labbake build node", "run labbake seed n1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v, want %q", err, want)
		}
	}
	if _, err := a.Names([]string{"nosuch"}); err == nil {
		t.Error("an unknown machine was accepted")
	}
}

// TestCheckSeedFiles: a seed older than a seed file its machine gets is
// stale, named with the file and the command; other machines' seeds are
// not.
func TestCheckSeedFiles(t *testing.T) {
	dir := t.TempDir()
	for p, c := range map[string]string{
		"lab.yaml": "name: t\nnodes:\n  - {name: master, role: master, ip: 172.18.0.2}\n  - {name: n1, role: node, ip: 172.18.0.3}\n" +
			"seed_files:\n  - {path: /etc/kubernetes/ceph/userKey, file: secrets/ceph.key, roles: [master]}\n",
		"secrets/ceph.key":    "AQB\n",
		"recipes/master.yaml": "base: {dir: root}\ndisk: {boot: []}\n",
		"recipes/node.yaml":   "extends: master\n",
		"root/etc/hostname":   "x\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := recipe.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	s, err := Open(context.Background(), l, Options{OutDir: out, Network: kit.ModeUser})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour)
	touch := func(p string, at time.Time) {
		t.Helper()
		os.MkdirAll(filepath.Dir(p), 0o755)
		if _, err := os.Stat(p); err != nil {
			os.WriteFile(p, []byte("seed"), 0o600)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	touch(filepath.Join(dir, "lab.yaml"), base)
	touch(filepath.Join(dir, "secrets/ceph.key"), base)
	for _, m := range []string{"master", "n1"} {
		touch(filepath.Join(out, "seed", m+".iso"), base.Add(time.Minute))
	}
	stale := "master: its seed is older than secrets/ceph.key (seed_files): run labbake seed master"
	if err := s.Check([]string{"master", "n1"}); err == nil || strings.Contains(err.Error(), "its seed") {
		t.Errorf("current seeds: %v", err)
	}
	touch(filepath.Join(dir, "secrets/ceph.key"), base.Add(2*time.Minute))
	err = s.Check([]string{"master", "n1"})
	if err == nil || !strings.Contains(err.Error(), stale) || strings.Contains(err.Error(), "n1: its seed") {
		t.Errorf("a newer seed file: %v, want %q and nothing about n1's seed", err, stale)
	}
	touch(filepath.Join(out, "seed", "master.iso"), base.Add(3*time.Minute))
	if err := s.Check([]string{"master"}); err == nil || strings.Contains(err.Error(), "its seed") {
		t.Errorf("seed written again: %v", err)
	}
}

// TestNodePorts: in user mode the NodePorts of lab.yaml are forwarded from
// 127.0.0.1 ports, chosen once and kept, to the control plane only; the
// QEMU command line carries them. The bridge needs no forward.
func TestNodePorts(t *testing.T) {
	dir := t.TempDir()
	for p, c := range map[string]string{
		"lab.yaml": "name: t\nnetwork: {node_ports: [30061, 30080]}\nnodes:\n  - {name: n1, role: node, ip: 172.18.0.3}\n" +
			"  - {name: master, role: master, ip: 172.18.0.2}\n",
		"recipes/master.yaml": "base: {dir: root}\ndisk: {boot: []}\n",
		"recipes/node.yaml":   "extends: master\n",
		"root/etc/hostname":   "x\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := recipe.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.Network.NodePorts, []int{30061, 30080}) {
		t.Fatalf("network.node_ports: %v", l.Network.NodePorts)
	}
	out := t.TempDir()
	open := func(mode string) *Lab {
		t.Helper()
		s, err := Open(context.Background(), l, Options{OutDir: out, Network: mode})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := open(kit.ModeUser), open(kit.ModeUser)
	np := a.NodePorts()
	if len(np) != 2 || np[0].GuestPort != 30061 || np[1].GuestPort != 30080 || np[0].HostPort == 0 || np[1].HostPort == 0 ||
		np[0].HostPort == np[1].HostPort || !slices.Equal(np, b.NodePorts()) {
		t.Fatalf("NodePorts not forwarded, or not kept: %+v / %+v", np, b.NodePorts())
	}
	master, _ := a.machine("master")
	n1, _ := a.machine("n1")
	if len(n1.Forwards) != 0 || len(master.Forwards) != 3 || master.Forwards[0].GuestPort != APIPort {
		t.Errorf("forwards: master %+v, n1 %+v", master.Forwards, n1.Forwards)
	}
	for _, f := range master.Forwards {
		if f.HostPort == master.SSHPort || f.HostPort == n1.SSHPort {
			t.Errorf("host port %d forwarded twice", f.HostPort)
		}
	}
	args := strings.Join(kit.QEMUArgs(master, a.Kit.Network, a.Kit.Host), " ")
	for _, f := range np {
		if want := fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:%d", f.HostPort, f.GuestPort); !strings.Contains(args, want) {
			t.Errorf("master's QEMU command line lacks %s:\n%s", want, args)
		}
	}
	if br := open(kit.ModeBridge); br.NodePorts() != nil {
		t.Errorf("bridge mode forwards %+v", br.NodePorts())
	}
}

// TestCheckStale: up refuses, naming the command, an image baked from
// another version of its recipe, a manifest without boot methods and a
// seed older than lab.yaml; current images and seeds pass.
func TestCheckStale(t *testing.T) {
	l := testLab(t)
	out := t.TempDir()
	s, err := Open(context.Background(), l, Options{OutDir: out, Network: kit.ModeUser})
	if err != nil {
		t.Fatal(err)
	}
	manifest := func(role, digest string, methods ...string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(out, role+".qcow2"), []byte("image"), 0o644); err != nil {
			t.Fatal(err)
		}
		m := bake.Manifest{RecipeDigest: digest}
		m.Boot.Methods = methods
		m.Output.SHA256 = "aaaa"
		b, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(out, role+".manifest.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	digest := func(role string) string {
		r, err := l.Recipe(role)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(r.Rendered)
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	base := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(l.Dir, "lab.yaml"), base, base)
	for _, m := range []string{"master", "n1"} {
		p := filepath.Join(out, "seed", m+".iso")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("seed"), 0o600)
		os.Chtimes(p, base.Add(time.Minute), base.Add(time.Minute))
	}
	manifest("master", digest("master"), "uefi")
	manifest("node", digest("node"), "bios")
	if err := s.Check([]string{"master", "n1"}); err != nil {
		t.Fatalf("current images and seeds: %v", err)
	}
	manifest("node", "sha256:"+strings.Repeat("0", 64), "bios")
	manifest("master", digest("master"))
	touched := base.Add(2 * time.Minute)
	os.Chtimes(filepath.Join(l.Dir, "lab.yaml"), touched, touched)
	err = s.Check([]string{"master", "n1"})
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("Check: %v, want a UsageError", err)
	}
	for _, want := range []string{
		"role node: " + filepath.Join(out, "node.qcow2") + " was baked from another version of its recipe: run labbake build node",
		"role master: the image was baked with disk.boot: [] and cannot boot",
		"master: its seed is older than lab.yaml: run labbake seed master",
		"n1: its seed is older than lab.yaml: run labbake seed n1",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v\nwant %q", err, want)
		}
	}
}

// TestWriteKitUserMode: in user mode OUT/kubeconfig and OUT/kit/ssh_config
// point at the ports forwarded on 127.0.0.1, on the bridge at the lab
// addresses.
func TestWriteKitUserMode(t *testing.T) {
	l := testLab(t)
	out := t.TempDir()
	for _, mode := range []string{kit.ModeUser, kit.ModeBridge} {
		s, err := Open(context.Background(), l, Options{OutDir: out, Network: mode})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteKit(t.Context()); err != nil {
			t.Fatal(err)
		}
		kc, err := os.ReadFile(filepath.Join(out, "kubeconfig"))
		if err != nil {
			t.Fatal(err)
		}
		conf, err := os.ReadFile(s.SSHConfig())
		if err != nil {
			t.Fatal(err)
		}
		master, _ := s.machine("master")
		n1, _ := s.machine("n1")
		server, hosts := "server: https://172.18.0.2:6443", []string{"HostName 172.18.0.2", "HostName 172.18.0.3"}
		if mode == kit.ModeUser {
			server = fmt.Sprintf("server: https://127.0.0.1:%d", master.Forwards[0].HostPort)
			hosts = []string{fmt.Sprintf("Port %d", master.SSHPort), fmt.Sprintf("Port %d", n1.SSHPort), "HostName 127.0.0.1"}
		}
		if !strings.Contains(string(kc), server) {
			t.Errorf("%s: OUT/kubeconfig lacks %q:\n%s", mode, server, kc)
		}
		for _, h := range hosts {
			if !strings.Contains(string(conf), h) {
				t.Errorf("%s: OUT/kit/ssh_config lacks %q:\n%s", mode, h, conf)
			}
		}
	}
}
