package integration

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The original lab's machines.
var classicNodes = []struct{ name, role, ip, mac string }{
	{"master", "master", "172.18.100.187", "52:54:2d:09:a3:d6"},
	{"node-one", "node", "172.18.100.122", "52:54:c8:7f:cc:9d"},
	{"node-two", "node", "172.18.100.123", "52:54:a3:d9:c0:0a"},
}

// makeSeedLab writes a lab of master and node roles on a small tar base
// (no kernel: disk.boot: []) with the given nodes, and a layer for extra
// files.
func makeSeedLab(t *testing.T, nodes string, extra string) string {
	t.Helper()
	dir := t.TempDir()
	var base []tarEntry
	for _, d := range []string{"etc", "etc/ssh", "etc/ssl", "etc/ssl/private", "usr", "usr/bin"} {
		base = append(base, tarEntry{&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: time.Unix(epoch-100, 0)}, ""})
	}
	for _, f := range []struct{ name, content string }{
		{"etc/hostname", "debian\n"},
		// A base as Debian's openssh-server leaves it: host keys made
		// at install, which the bake must take out.
		{"etc/ssh/ssh_host_ed25519_key", baseHostKey(t)},
		{"etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAU2iGJzmFdeMyxJtiMc+moLDy6dbLAGGNlTOQlHtPD/ root@debian\n"},
	} {
		base = append(base, tarEntry{&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o600, Size: int64(len(f.content)), ModTime: time.Unix(epoch-100, 0)}, f.content})
	}
	writeTar(t, filepath.Join(dir, "base.tar"), base)
	mkfile(t, dir, "lab.yaml", "name: seeds\nepoch: 1700000000\nnodes:\n"+nodes)
	mkfile(t, dir, "recipes/common.yaml", "base: {tar: base.tar}\ndisk: {size: 300MiB, boot: []}\nfiles:\n  - {path: /etc/motd, content: \"{{ .lab.name }} {{ .role }}\\n\"}\n"+extra)
	mkfile(t, dir, "recipes/master.yaml", "extends: common\n")
	mkfile(t, dir, "recipes/node.yaml", "extends: common\n")
	return dir
}

func classicNodesYAML() string {
	var b strings.Builder
	for _, n := range classicNodes {
		b.WriteString("  - {name: " + n.name + ", role: " + n.role + ", ip: " + n.ip + "}\n")
	}
	return b.String()
}

var (
	hostKeyOnce sync.Once
	hostKey     string
)

// baseHostKey is one private key for every base the tests make, so that
// two labs' bases are the same bytes.
func baseHostKey(t *testing.T) string {
	hostKeyOnce.Do(func() { hostKey = testPrivateKey(t) })
	return hostKey
}

func testPrivateKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// isoFile extracts one file of a seed ISO with isoinfo, through Rock Ridge
// (rr) or Joliet.
func isoFile(t *testing.T, iso, name string, rr bool) []byte {
	t.Helper()
	flag := "-J"
	if rr {
		flag = "-R"
	}
	out, err := exec.Command(tool(t, "isoinfo"), flag, "-i", iso, "-x", "/"+name).Output()
	if err != nil {
		t.Fatalf("isoinfo %s -x /%s %s: %v", flag, name, iso, err)
	}
	return out
}

type userData struct {
	Hostname   string `yaml:"hostname"`
	WriteFiles []struct {
		Path        string `yaml:"path"`
		Content     string `yaml:"content"`
		Encoding    string `yaml:"encoding"`
		Permissions string `yaml:"permissions"`
	} `yaml:"write_files"`
}

func (u userData) file(t *testing.T, path string) ([]byte, string, bool) {
	for _, f := range u.WriteFiles {
		if f.Path == path {
			if f.Encoding == "b64" || f.Encoding == "base64" {
				b, err := base64.StdEncoding.DecodeString(f.Content)
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				return b, f.Permissions, true
			}
			return []byte(f.Content), f.Permissions, true
		}
	}
	return nil, "", false
}

// TestSeeds bakes the classic three-machine lab through the CLI and checks
// every seed with the tools users trust: isoinfo (Rock Ridge and Joliet),
// cloud-init's own schema validator and network renderer; the admin
// kubeconfig with kubectl; seeds reproducible; a node's seed without CA,
// etcd or service-account keys; pki renew changing seeds but not images.
func TestSeeds(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs", "isoinfo", "cloud-init"} {
		tool(t, name)
	}
	lab := makeSeedLab(t, classicNodesYAML(), "")
	out := filepath.Join(t.TempDir(), "out")
	stdout, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "build", "--all")
	if code != 0 {
		t.Fatalf("build --all: exit %d\n%s", code, stderr)
	}
	images := map[string]string{}
	for _, role := range []string{"master", "node"} {
		images[role] = sha256File(t, filepath.Join(out, role+".qcow2"))
	}
	seeds := map[string][]byte{}
	for _, n := range classicNodes {
		iso := filepath.Join(out, "seed", n.name+".iso")
		if !strings.Contains(stdout, iso) {
			t.Errorf("build did not print %s:\n%s", iso, stdout)
		}
		st, err := os.Stat(iso)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", iso, st.Mode().Perm())
		}
		seeds[n.name], _ = os.ReadFile(iso)
		for _, flag := range []string{"-R", "-J"} {
			o, err := runTool(t, "isoinfo", flag, "-l", "-i", iso)
			if err != nil {
				t.Fatalf("isoinfo %s -l: %v\n%s", flag, err, o)
			}
			for _, f := range []string{"meta-data", "user-data", "network-config"} {
				if !strings.Contains(o, " "+f) {
					t.Errorf("isoinfo %s -l %s lacks %s:\n%s", flag, iso, f, o)
				}
			}
		}
		if o, _ := runTool(t, "isoinfo", "-d", "-i", iso); !strings.Contains(o, "Volume id: CIDATA") && !strings.Contains(o, "Volume id: cidata") {
			t.Errorf("isoinfo -d: volume id is not cidata:\n%s", o)
		}
		dir := t.TempDir()
		ud := isoFile(t, iso, "user-data", true)
		if !bytes.Equal(ud, isoFile(t, iso, "user-data", false)) {
			t.Errorf("%s: user-data differs between Rock Ridge and Joliet", n.name)
		}
		if err := os.WriteFile(filepath.Join(dir, "user-data"), ud, 0o600); err != nil {
			t.Fatal(err)
		}
		if o, err := runTool(t, "cloud-init", "schema", "--config-file", filepath.Join(dir, "user-data")); err != nil {
			t.Errorf("cloud-init schema on %s's user-data: %v\n%s", n.name, err, o)
		}
		nc := isoFile(t, iso, "network-config", true)
		if err := os.WriteFile(filepath.Join(dir, "network-config"), nc, 0o600); err != nil {
			t.Fatal(err)
		}
		netd := filepath.Join(dir, "networkd")
		if o, err := runTool(t, "cloud-init", "devel", "net-convert", "--network-data", filepath.Join(dir, "network-config"),
			"--kind", "yaml", "--distro", "debian", "--output-kind", "networkd", "--directory", netd); err != nil {
			t.Errorf("cloud-init net-convert on %s: %v\n%s", n.name, err, o)
		} else {
			var all strings.Builder
			filepath.Walk(netd, func(p string, info os.FileInfo, err error) error {
				if err == nil && info.Mode().IsRegular() {
					b, _ := os.ReadFile(p)
					all.Write(b)
				}
				return nil
			})
			for _, w := range []string{"Address=" + n.ip + "/16", "MACAddress=" + n.mac, "Gateway=172.18.0.1"} {
				if !strings.Contains(all.String(), w) {
					t.Errorf("%s: networkd config lacks %q:\n%s", n.name, w, all.String())
				}
			}
		}
		var u userData
		if err := yaml.Unmarshal(ud, &u); err != nil {
			t.Fatalf("%s user-data: %v", n.name, err)
		}
		if u.Hostname != n.name {
			t.Errorf("%s: hostname %q", n.name, u.Hostname)
		}
		env, _, ok := u.file(t, "/etc/network-environment")
		if !ok || !strings.Contains(string(env), "NODE_IP="+n.ip) || !strings.Contains(string(env), "MASTER_IP=172.18.100.187") {
			t.Errorf("%s: /etc/network-environment: %q", n.name, env)
		}
		_, mode, ok := u.file(t, "/var/lib/kubelet/pki/kubelet.key")
		if !ok || strings.TrimLeft(mode, "0") != "600" {
			t.Errorf("%s: kubelet serving key missing or mode %q", n.name, mode)
		}
		controlPlane := []string{"/etc/kubernetes/pki/ca.key", "/etc/kubernetes/pki/sa.key", "/etc/kubernetes/pki/etcd/server.key", "/etc/kubernetes/pki/apiserver.key"}
		for _, p := range controlPlane {
			_, _, has := u.file(t, p)
			if has != (n.role == "master") {
				t.Errorf("%s: has %s = %v", n.name, p, has)
			}
		}
	}
	if o, err := runTool(t, "kubectl", "config", "view", "--kubeconfig", filepath.Join(out, "kubeconfig"), "-o", "jsonpath={.clusters[0].cluster.server}"); err != nil || o != "https://172.18.100.187:6443" {
		t.Errorf("kubectl config view: %v %q", err, o)
	}
	kh, err := os.ReadFile(filepath.Join(out, "kit", "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range classicNodes {
		if !strings.Contains(string(kh), n.name+","+n.ip+" ssh-ed25519 ") {
			t.Errorf("known_hosts lacks %s:\n%s", n.name, kh)
		}
	}

	// Seeds are reproducible: same PKI, other cache, later clock.
	time.Sleep(1100 * time.Millisecond)
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "seed", "--all"); code != 0 {
		t.Fatalf("seed --all: exit %d\n%s", code, stderr)
	}
	for _, n := range classicNodes {
		b, _ := os.ReadFile(filepath.Join(out, "seed", n.name+".iso"))
		if !bytes.Equal(b, seeds[n.name]) {
			t.Errorf("%s: the seed changed on a second run", n.name)
		}
	}

	// pki renew: new certificates, seeds and instance-ids; same images.
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "pki", "renew"); code != 0 {
		t.Fatalf("pki renew: exit %d\n%s", code, stderr)
	}
	for _, n := range classicNodes {
		iso := filepath.Join(out, "seed", n.name+".iso")
		b, _ := os.ReadFile(iso)
		if bytes.Equal(b, seeds[n.name]) {
			t.Errorf("%s: pki renew left the seed as it was", n.name)
		}
		if bytes.Equal(metaData(t, b), metaData(t, seeds[n.name])) {
			t.Errorf("%s: pki renew left the instance-id as it was", n.name)
		}
	}
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "build", "--all"); code != 0 {
		t.Fatalf("build after renew: exit %d\n%s", code, stderr)
	}
	for role, sum := range images {
		if got := sha256File(t, filepath.Join(out, role+".qcow2")); got != sum {
			t.Errorf("%s: pki renew changed the image", role)
		}
	}
	if o, _, code := labbake(t, nil, "-C", lab, "--out", out, "pki", "status"); code != 0 || !strings.Contains(o, "system:node:node-one") {
		t.Errorf("pki status: exit %d\n%s", code, o)
	}
}

func metaData(t *testing.T, iso []byte) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "seed.iso")
	if err := os.WriteFile(p, iso, 0o600); err != nil {
		t.Fatal(err)
	}
	return isoFile(t, p, "meta-data", true)
}

// TestImagesSameForEveryLab: two labs that differ in PKI, keys, addresses
// and machine names give byte-identical role images; only seeds differ.
func TestImagesSameForEveryLab(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs"} {
		tool(t, name)
	}
	other := "  - {name: cp, role: master, ip: 10.9.0.10}\n  - {name: w1, role: node, ip: 10.9.0.11}\n"
	var sums, manifests [2]map[string]string
	for i, nodes := range []string{classicNodesYAML(), other} {
		lab := makeSeedLab(t, nodes, "")
		if i == 1 {
			lab2 := filepath.Join(lab, "lab.yaml")
			b, _ := os.ReadFile(lab2)
			b = bytes.Replace(b, []byte("nodes:"), []byte("network: {cidr: 10.9.0.0/16, gateway: 10.9.0.1}\nssh: {authorized_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAU2iGJzmFdeMyxJtiMc+moLDy6dbLAGGNlTOQlHtPD/ admin\"]}\nnodes:"), 1)
			os.WriteFile(lab2, b, 0o644)
		}
		out := t.TempDir()
		if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "build", "--all"); code != 0 {
			t.Fatalf("lab %d: exit %d\n%s", i, code, stderr)
		}
		sums[i] = map[string]string{}
		manifests[i] = map[string]string{}
		for _, role := range []string{"master", "node"} {
			sums[i][role] = sha256File(t, filepath.Join(out, role+".qcow2"))
			b, _ := os.ReadFile(filepath.Join(out, role+".manifest.json"))
			manifests[i][role] = string(b)
		}
	}
	for _, role := range []string{"master", "node"} {
		if sums[0][role] != sums[1][role] {
			t.Errorf("%s: the images of two labs differ:\n%s\n%s", role, manifests[0][role], manifests[1][role])
		}
	}
}

// TestSecretScan: a layer that brings a private key fails the build, naming
// the path and the layer, and writes nothing; allowed by secrets.allow it
// builds. The base's SSH host keys are taken out silently.
func TestSecretScan(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs"} {
		tool(t, name)
	}
	nodes := "  - {name: master, role: master, ip: 172.18.0.2}\n"
	for _, tc := range []struct {
		name, extra string
		code        int
	}{
		{"refused", "layers: [{tar: keys.tar}]\n", 2},
		{"allowed", "layers: [{tar: keys.tar}]\nsecrets: {allow: [/etc/app/*.key]}\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := makeSeedLab(t, nodes, tc.extra)
			key := testPrivateKey(t)
			writeTar(t, filepath.Join(lab, "keys.tar"), []tarEntry{
				{&tar.Header{Typeflag: tar.TypeDir, Name: "etc/app/", Mode: 0o755, ModTime: time.Unix(epoch-100, 0)}, ""},
				{&tar.Header{Typeflag: tar.TypeReg, Name: "etc/app/server.key", Mode: 0o600, Size: int64(len(key)), ModTime: time.Unix(epoch-100, 0)}, key},
			})
			out := t.TempDir()
			_, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "build", "master")
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			entries, _ := os.ReadDir(out)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if code != 0 {
				if !strings.Contains(stderr, "/etc/app/server.key") || !strings.Contains(stderr, "keys.tar") {
					t.Errorf("the error does not name the path and its layer:\n%s", stderr)
				}
				if slices.Contains(names, "master.qcow2") {
					t.Errorf("a refused build wrote %v", names)
				}
				return
			}
			m := readManifest(t, filepath.Join(out, "master.manifest.json"))
			var root int64
			for _, p := range m.Partitions {
				if p.Name == "root" {
					root = p.Offset
				}
			}
			raw := filepath.Join(t.TempDir(), "master.raw")
			if o, err := runTool(t, "qemu-img", "convert", "-O", "raw", filepath.Join(out, "master.qcow2"), raw); err != nil {
				t.Fatalf("qemu-img convert: %v\n%s", err, o)
			}
			got := readImage(t, raw, root)
			if _, ok := got["etc/app/server.key"]; !ok {
				t.Error("the allowed key is not in the image")
			}
			for p := range got {
				if strings.HasPrefix(p, "etc/ssh/ssh_host_") {
					t.Errorf("%s is still in the image", p)
				}
			}
		})
	}
}

// TestUnreachableUpstreamFailsFast: inputs on a host (or a registry) that
// does not resolve fail at once (no retries), each named at its position with how
// to supply it, exit 2, and nothing is written.
func TestUnreachableUpstreamFailsFast(t *testing.T) {
	lab := makeSeedLab(t, "  - {name: master, role: master, ip: 172.18.0.2}\n",
		"artifacts:\n"+
			"  - {url: https://dl.labbake-test.invalid/v1/kubelet, sha256: {url: https://dl.labbake-test.invalid/v1/kubelet.sha256}, dest: /usr/local/bin/kubelet}\n"+
			"  - {url: https://dl.labbake-test.invalid/v1/kubectl, sha256: {url: https://dl.labbake-test.invalid/v1/kubectl.sha256}, dest: /usr/local/bin/kubectl}\n"+
			"images:\n  - ref: registry.labbake-test.invalid/pause:3.10\n")
	out := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	_, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "build", "--all")
	took := time.Since(start)
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, stderr)
	}
	for _, want := range []string{"recipes/common.yaml:6:5: artifacts[0]", "recipes/common.yaml:7:5: artifacts[1]", "unreachable from this machine", "--mirror",
		"recipes/common.yaml:9:5: images[0]: image registry.labbake-test.invalid/pause:3.10: registry.labbake-test.invalid: unreachable from this machine (the name does not resolve); mirror the registry in registries.conf"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the error lacks %q:\n%s", want, stderr)
		}
	}
	if took > 20*time.Second {
		t.Errorf("took %s to fail", took)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("the output dir was written: %v", err)
	}
}

// TestSeedFiles: lab.yaml's seed_files reach the machines they name
// through their seeds only: the master's user-data writes the ceph key
// (cloud-init's schema accepts it), node-one's does not, no image holds
// it (the raw disks are searched for it and its base64); seeds stay
// reproducible, and a new key gives the master a new instance-id; a
// missing key is one positioned line, exit 2, and nothing written.
func TestSeedFiles(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs", "isoinfo", "cloud-init", "qemu-img"} {
		tool(t, name)
	}
	const key = "AQBLabbakeSeedFilesTestKey0123456789abcd==\n"
	lab := makeSeedLab(t, classicNodesYAML(), "")
	labYAML := filepath.Join(lab, "lab.yaml")
	b, _ := os.ReadFile(labYAML)
	entry := "seed_files:\n  - path: /etc/kubernetes/ceph/userKey\n    file: secrets/ceph-user.key\n    roles: [master]\n"
	mkfile(t, lab, "lab.yaml", string(b)+entry)
	line := strings.Count(string(b), "\n") + 3 // the line of file:
	mkfile(t, lab, "secrets/ceph-user.key", key)

	out := filepath.Join(t.TempDir(), "out")
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "build", "--all"); code != 0 {
		t.Fatalf("build --all: exit %d\n%s", code, stderr)
	}
	seeds := map[string][]byte{}
	for _, n := range classicNodes {
		iso := filepath.Join(out, "seed", n.name+".iso")
		seeds[n.name], _ = os.ReadFile(iso)
		ud := isoFile(t, iso, "user-data", true)
		p := filepath.Join(t.TempDir(), "user-data")
		if err := os.WriteFile(p, ud, 0o600); err != nil {
			t.Fatal(err)
		}
		if o, err := runTool(t, "cloud-init", "schema", "--config-file", p); err != nil {
			t.Errorf("cloud-init schema on %s's user-data: %v\n%s", n.name, err, o)
		}
		var u userData
		if err := yaml.Unmarshal(ud, &u); err != nil {
			t.Fatalf("%s user-data: %v", n.name, err)
		}
		got, mode, ok := u.file(t, "/etc/kubernetes/ceph/userKey")
		switch {
		case ok != (n.role == "master"):
			t.Errorf("%s: carries the ceph key: %v", n.name, ok)
		case ok && (string(got) != key || mode != "0600"):
			t.Errorf("%s: ceph key %q mode %q, want %q 0600", n.name, got, mode, key)
		}
	}
	for _, role := range []string{"master", "node"} {
		raw := filepath.Join(t.TempDir(), role+".raw")
		if o, err := runTool(t, "qemu-img", "convert", "-O", "raw", filepath.Join(out, role+".qcow2"), raw); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, o)
		}
		disk, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{strings.TrimSpace(key), base64.StdEncoding.EncodeToString([]byte(key))} {
			if bytes.Contains(disk, []byte(s)) {
				t.Errorf("the %s image holds %q", role, s)
			}
		}
		os.Remove(raw)
	}

	// Reproducible; a new key is a new seed and instance-id for the
	// master only.
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "seed", "--all"); code != 0 {
		t.Fatalf("seed --all: exit %d\n%s", code, stderr)
	}
	for _, n := range classicNodes {
		if b, _ := os.ReadFile(filepath.Join(out, "seed", n.name+".iso")); !bytes.Equal(b, seeds[n.name]) {
			t.Errorf("%s: the seed changed on a second run", n.name)
		}
	}
	mkfile(t, lab, "secrets/ceph-user.key", "AQBanotherkey==\n")
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "seed", "--all"); code != 0 {
		t.Fatalf("seed --all: exit %d\n%s", code, stderr)
	}
	for _, n := range classicNodes {
		b, _ := os.ReadFile(filepath.Join(out, "seed", n.name+".iso"))
		if newID := !bytes.Equal(metaData(t, b), metaData(t, seeds[n.name])); newID != (n.role == "master") {
			t.Errorf("%s: new key, new instance-id: %v", n.name, newID)
		}
	}

	// A missing key: one line at the entry's file:, exit 2, nothing written
	// by seed nor by build.
	if err := os.Remove(filepath.Join(lab, "secrets/ceph-user.key")); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("lab.yaml:%d:11: seed_files[0].file: secrets/ceph-user.key not found (it is read when seeds are written)\n", line)
	for _, verb := range [][]string{{"seed", "master"}, {"build", "master"}} {
		fresh := filepath.Join(t.TempDir(), "out")
		_, stderr, code := labbake(t, nil, append([]string{"-C", lab, "--out", fresh, "--cache", t.TempDir()}, verb...)...)
		if code != 2 || stderr != want {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", verb[0], code, stderr, want)
		}
		if _, err := os.Stat(fresh); !os.IsNotExist(err) {
			entries, _ := os.ReadDir(fresh)
			t.Errorf("%s wrote %v", verb[0], entries)
		}
	}
	// pki renew rewrites every seed: without the key it renews nothing.
	crt := sha256File(t, filepath.Join(out, "pki", "apiserver.crt"))
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "pki", "renew"); code != 2 || stderr != want {
		t.Errorf("pki renew: exit %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	if sha256File(t, filepath.Join(out, "pki", "apiserver.crt")) != crt {
		t.Error("pki renew without the key renewed the certificates")
	}
	// A node's seed does not need the master's key.
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", t.TempDir(), "seed", "node-one"); code != 0 {
		t.Errorf("seed node-one without the master's key: exit %d\n%s", code, stderr)
	}
}

// TestFallbackValues: build --fallback-values FILE (what make lab passes
// with the from-source profile) bakes with FILE laid over the lab when an
// input's host does not resolve, after one line saying so; the image is
// the one a build with --values FILE gives. Without the flag the build
// fails fast as before; with it, a lab whose inputs resolve ignores FILE,
// and an input that FILE does not fix still fails, exit 2, nothing written.
func TestFallbackValues(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs", "qemu-img"} {
		tool(t, name)
	}
	lab := makeSeedLab(t, "  - {name: master, role: master, ip: 172.18.0.2}\n",
		"artifacts:\n"+
			"  {{- if eq .vars.source \"far\" }}\n"+
			"  - {url: https://dl.labbake-test.invalid/v1/tool, sha256: {url: https://dl.labbake-test.invalid/v1/tool.sha256}, dest: /usr/local/bin/tool}\n"+
			"  {{- else }}\n"+
			"  - {file: tools/tool, dest: /usr/local/bin/tool}\n"+
			"  {{- end }}\n")
	b, _ := os.ReadFile(filepath.Join(lab, "lab.yaml"))
	mkfile(t, lab, "lab.yaml", string(b)+"vars: {source: far}\n")
	mkfile(t, lab, "tools/tool", "#!/bin/sh\necho tool\n")
	mkfile(t, lab, "values/near.yaml", "vars: {source: near}\n")
	mkfile(t, lab, "values/still-far.yaml", "vars: {other: 1}\n")
	cache := t.TempDir()
	nearValues, stillFar := filepath.Join(lab, "values/near.yaml"), filepath.Join(lab, "values/still-far.yaml")
	line := "labbake: upstream cannot be reached from this machine (dl.labbake-test.invalid does not resolve): building with --values " + nearValues + " instead\n"

	out := filepath.Join(t.TempDir(), "out")
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", cache, "build", "--all"); code != 2 || !strings.Contains(stderr, "unreachable from this machine") {
		t.Fatalf("without --fallback-values: exit %d, want 2 and the unreachable input\n%s", code, stderr)
	}
	_, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", cache, "build", "--all", "--fallback-values", nearValues)
	if code != 0 {
		t.Fatalf("with --fallback-values: exit %d\n%s", code, stderr)
	}
	if strings.Count(stderr, line) != 1 || strings.Count(stderr, "upstream cannot be reached") != 1 {
		t.Errorf("stderr does not say so in one line %q:\n%s", line, stderr)
	}
	want := filepath.Join(t.TempDir(), "want")
	if _, stderr, code := labbake(t, nil, "-C", lab, "--out", want, "--cache", cache, "--values", nearValues, "build", "--all"); code != 0 {
		t.Fatalf("--values values/near.yaml: exit %d\n%s", code, stderr)
	}
	if a, b := sha256File(t, filepath.Join(out, "master.qcow2")), sha256File(t, filepath.Join(want, "master.qcow2")); a != b {
		t.Errorf("the fallback's image %s is not the one --values gives, %s", a, b)
	}

	// The output dir remembers the values its lab was built with: verbs
	// given none (labbake up after make lab, a rebuild) use them.
	if b, err := os.ReadFile(filepath.Join(out, "values.list")); err != nil || string(b) != nearValues+"\n" {
		t.Errorf("values.list: %q, %v; want %s", b, err, nearValues)
	}
	_, stderr, code = labbake(t, nil, "-C", lab, "--out", out, "--cache", cache, "build", "--all")
	if code != 0 || strings.Contains(stderr, "cannot be reached") {
		t.Errorf("a rebuild with no --values: exit %d\n%s", code, stderr)
	} else if a, b := sha256File(t, filepath.Join(out, "master.qcow2")), sha256File(t, filepath.Join(want, "master.qcow2")); a != b {
		t.Errorf("a rebuild with no --values gives %s, not the lab's %s", a, b)
	}

	// Reachable inputs: the file is not used, nothing said.
	near := filepath.Join(t.TempDir(), "near")
	_, stderr, code = labbake(t, nil, "-C", lab, "--out", near, "--cache", cache, "--values", nearValues, "build", "--all", "--fallback-values", stillFar)
	if code != 0 || strings.Contains(stderr, "cannot be reached") {
		t.Errorf("a lab whose inputs resolve: exit %d\n%s", code, stderr)
	}

	// A fallback that does not help: exit 2, the input named, nothing written.
	far := filepath.Join(t.TempDir(), "far")
	_, stderr, code = labbake(t, nil, "-C", lab, "--out", far, "--cache", cache, "build", "--all", "--fallback-values", stillFar)
	if code != 2 || !strings.Contains(stderr, "recipes/common.yaml") || !strings.Contains(stderr, "unreachable from this machine") {
		t.Errorf("a fallback that does not help: exit %d, want 2 naming the input\n%s", code, stderr)
	}
	if _, err := os.Stat(far); !os.IsNotExist(err) {
		t.Errorf("the output dir was written: %v", err)
	}
}
