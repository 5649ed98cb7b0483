package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/cli"
)

// TestSeedBoot bakes a trixie image with cloud-init and openssh-server,
// then boots it as machine n1 with `labbake test master --node n1`: its
// seed attached and its lab NIC on a restricted user-mode network with the
// lab's addressing. The checks in the guest see n1's hostname, its static
// lab address on the NIC with the MAC derived from its name, its
// /etc/network-environment, the host key from OUT/pki and its certificates
// with mode 0600; meanwhile the host logs in with ssh, the lab key and
// OUT/kit/known_hosts (StrictHostKeyChecking=yes) through the forwarded
// port, which the last check waits for.
func TestSeedBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mmdebstrap and boots a VM with cloud-init (about 3 minutes)")
	}
	requireBootTools(t)
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("ssh not installed (Debian package openssh-client)")
	}
	lab, out, cache := t.TempDir(), t.TempDir(), e2eCache(t)
	write(t, lab, "lab.yaml", "name: e2e-seed\nepoch: 1735689600\nnodes:\n  - {name: n1, role: master, ip: 172.18.0.5}\n")
	run := func(args ...string) (string, string, error) {
		var so, se bytes.Buffer
		err := cli.Run(context.Background(), append([]string{"-C", lab, "--cache", cache, "--out", out}, args...), &so, &se, os.Getenv)
		return so.String(), se.String(), err
	}
	// The PKI first: the checks expect n1's host key.
	if _, se, err := run("seed", "--all"); err != nil {
		t.Fatalf("seed: %v\n%s", err, se)
	}
	fp, err := exec.Command("ssh-keygen", "-l", "-F", "n1", "-f", filepath.Join(out, "kit", "known_hosts")).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -F n1: %v", err)
	}
	fingerprint := ""
	for _, f := range strings.Fields(string(fp)) {
		if strings.HasPrefix(f, "SHA256:") {
			fingerprint = f
		}
	}
	if fingerprint == "" {
		t.Fatalf("no fingerprint for n1 in known_hosts:\n%s", fp)
	}
	// known_hosts holds the host key of OUT/pki, which the seed delivers.
	pkiKey := filepath.Join(out, "pki", "machines", "n1", "ssh_host_ed25519_key.pub")
	if fp, err := exec.Command("ssh-keygen", "-l", "-f", pkiKey).Output(); err != nil || !strings.Contains(string(fp), " "+fingerprint+" ") {
		t.Fatalf("known_hosts's fingerprint of n1 %s is not that of %s: %v %s", fingerprint, pkiKey, err, fp)
	}
	// The guest's certificates are OUT/pki's own bytes.
	sums := ""
	for _, f := range []struct{ pki, guest string }{
		{"ca.crt", "/etc/kubernetes/pki/ca.crt"},
		{"apiserver.crt", "/etc/kubernetes/pki/apiserver.crt"},
		{"machines/n1/kubelet.crt", "/var/lib/kubelet/pki/kubelet.crt"},
		{"machines/n1/etcd-server.crt", "/etc/kubernetes/pki/etcd/server.crt"},
	} {
		b, err := os.ReadFile(filepath.Join(out, "pki", filepath.FromSlash(f.pki)))
		if err != nil {
			t.Fatal(err)
		}
		if sums != "" {
			sums += "\\n" // a newline in the YAML string
		}
		sums += fmt.Sprintf("%x  %s", sha256.Sum256(b), f.guest)
	}
	write(t, lab, "recipes/master.yaml", "base:\n  debian:\n    suite: trixie\n    packages: ["+strings.Join(basePackages, ", ")+"]\n"+
		"disk: {size: 3GiB}\n"+networkdFiles+
		"checks:\n  commands:\n"+
		"    - {run: hostname, expect: \"${NODE_NAME}\"}\n"+
		"    - {run: \"ip -o -4 addr show\", expect: \"inet ${NODE_IP}/16\"}\n"+
		"    - {run: \"ip -o link show\", expect: \"link/ether 52:54:eb:79:54:ec\"}\n"+
		// the address is on the NIC with n1's MAC
		"    - {run: \"ip -o -4 addr show dev $(ip -o link show | grep -F 52:54:eb:79:54:ec | cut -d: -f2 | cut -d@ -f1)\", expect: \"inet 172.18.0.5/16\"}\n"+
		"    - {run: \"cat /etc/network-environment\", expect: \"NODE_NAME=n1\\nNODE_IP=172.18.0.5\\nDEFAULT_IPV4=172.18.0.5\\nMASTER_IP=172.18.0.5\\n"+
		"ETCD_ENDPOINTS=https://172.18.0.5:2379\\nKUBE_API_URL=https://172.18.0.5:6443\\nPOD_CIDR=172.19.0.0/16\\nSERVICE_CIDR=10.100.0.0/24\\n"+
		"CLUSTER_DNS=10.100.0.10\\nCLUSTER_DOMAIN=cluster.local\"}\n"+
		"    - {run: \"ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\", expect: \""+fingerprint+"\"}\n"+
		"    - {run: \"stat -c '%a %U' /etc/kubernetes/pki/apiserver.key /var/lib/kubelet/pki/kubelet.key\", expect: \"600 root\\n600 root\"}\n"+
		// every file of the seed 0600: keys, kubeconfigs and certificates
		"    - {run: \"stat -c '%a %U %n' /etc/kubernetes/kubelet.conf /etc/kubernetes/pki/etcd/server.key /etc/kubernetes/pki/apiserver.crt /var/lib/kubelet/pki/kubelet.crt\", "+
		"expect: \"600 root /etc/kubernetes/kubelet.conf\\n600 root /etc/kubernetes/pki/etcd/server.key\\n600 root /etc/kubernetes/pki/apiserver.crt\\n600 root /var/lib/kubelet/pki/kubelet.crt\"}\n"+
		"    - {run: \"sha256sum /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/apiserver.crt /var/lib/kubelet/pki/kubelet.crt /etc/kubernetes/pki/etcd/server.crt\", expect: \""+sums+"\"}\n"+
		"    - {run: \"test -e /run/ssh-was-here\"}\n")
	start := time.Now()
	if _, se, err := run("build", "master"); err != nil {
		t.Fatalf("build: %v\n%s", err, tail(se, 40))
	}
	t.Logf("baked in %s", time.Since(start).Round(time.Second))

	port := freePort(t)
	type result struct {
		so, se string
		err    error
	}
	done := make(chan result, 1)
	start = time.Now()
	go func() {
		so, se, err := run("test", "master", "--node", "n1", "--ssh-port", fmt.Sprint(port), "--accel", "tcg", "--timeout", "600s")
		done <- result{so, se, err}
	}()
	sshArgs := []string{
		"-i", filepath.Join(out, "pki", "ssh", "id_ed25519"),
		"-o", "UserKnownHostsFile=" + filepath.Join(out, "kit", "known_hosts"),
		"-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias=n1", "-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
		"-p", fmt.Sprint(port), "root@127.0.0.1", "touch /run/ssh-was-here && hostname",
	}
	var sshOut []byte
	var sshErr error
	var res result
loop:
	for {
		select {
		case res = <-done:
			break loop
		case <-time.After(3 * time.Second):
		}
		if sshOut == nil || sshErr != nil {
			sshOut, sshErr = exec.Command(sshBin, sshArgs...).CombinedOutput()
			if sshErr == nil {
				t.Logf("ssh answered after %s: %s", time.Since(start).Round(time.Second), strings.TrimSpace(string(sshOut)))
			}
		}
	}
	if sshErr != nil || strings.TrimSpace(string(sshOut)) != "n1" {
		t.Errorf("ssh root@n1 with the lab key and known_hosts: %v\n%s", sshErr, sshOut)
	}
	if res.err != nil {
		t.Fatalf("labbake test master --node n1: %v\nstdout:\n%s\nstderr:\n%s", res.err, res.so, tail(res.se, 30))
	}
	t.Logf("labbake test --node n1 (cloud-init with a seed): %s\n%s\n%s", time.Since(start).Round(time.Second), strings.TrimSpace(res.se), strings.TrimSpace(res.so))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
