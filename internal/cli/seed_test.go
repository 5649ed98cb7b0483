package cli

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seedLab writes a lab of a master and a node and makes its PKI and seeds
// with labbake seed --all; it returns the lab dir and its output dir.
func seedLab(t *testing.T) (string, string) {
	t.Helper()
	lab := t.TempDir()
	writeFiles(t, lab, map[string]string{"lab.yaml": "name: t\nnodes:\n" +
		"  - {name: master, role: master, ip: 172.18.0.2}\n  - {name: n1, role: node, ip: 172.18.0.3}\n"})
	out := filepath.Join(lab, "output")
	if _, stderr, code := run(t, "-C", lab, "seed", "--all"); code != 0 {
		t.Fatalf("seed --all: exit %d\n%s", code, stderr)
	}
	return lab, out
}

// snapshotDir is every file under dir with its content and mode.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		got[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func pemBlock(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	return block.Bytes
}

// TestPKIStatusExitCode: labbake pki status exits 0 while every certificate
// has more than 30 days left, 1 (naming the certificate and what to do)
// when one expires within 30 days, and 0 again after pki renew.
func TestPKIStatusExitCode(t *testing.T) {
	lab, out := seedLab(t)
	stdout, stderr, code := run(t, "-C", lab, "pki", "status")
	if code != 0 || !strings.Contains(stdout, "CN=system:node:n1,O=system:nodes") {
		t.Fatalf("pki status of a new lab: exit %d\n%s%s", code, stdout, stderr)
	}

	// kube-proxy's certificate re-signed by the lab's CA for its own key,
	// ending in 10 days.
	pki := filepath.Join(out, "pki")
	ca, err := x509.ParseCertificate(pemBlock(t, filepath.Join(pki, "ca.crt")))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParseECPrivateKey(pemBlock(t, filepath.Join(pki, "ca.key")))
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParseECPrivateKey(pemBlock(t, filepath.Join(pki, "kube-proxy.key")))
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "system:kube-proxy"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pki, "kube-proxy.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"pki", "status"}, {"pki", "status", "--json"}} {
		stdout, stderr, code := run(t, append([]string{"-C", lab}, args...)...)
		if code != 1 || !strings.Contains(stderr, "1 certificates expire within 30 days (kube-proxy.crt): run labbake pki renew") {
			t.Errorf("%s with a certificate ending in 10 days: exit %d, want 1\n%s", strings.Join(args, " "), code, stderr)
		}
		if !strings.Contains(stdout, "kube-proxy.crt") {
			t.Errorf("%s does not list kube-proxy.crt:\n%s", strings.Join(args, " "), stdout)
		}
	}

	if _, stderr, code := run(t, "-C", lab, "pki", "renew"); code != 0 {
		t.Fatalf("pki renew: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := run(t, "-C", lab, "pki", "status"); code != 0 {
		t.Errorf("pki status after renew: exit %d\n%s", code, stderr)
	}
}

// TestDamagedPKI: a PKI directory missing a key is reported through the
// CLI (exit 2, the file and what to do) and never regenerated: neither
// seed nor pki renew changes OUT/pki or the seeds, except that renew
// re-issues a leaf as the error says it does.
func TestDamagedPKI(t *testing.T) {
	for _, tc := range []struct {
		name, remove, fix string
		renews            bool
	}{
		{"leaf key", "machines/n1/kubelet.key", "run `labbake pki renew` to re-issue the lab's leaf certificates", true},
		{"CA key", "ca.key", "restore it from a backup, or delete " /* the PKI dir */, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab, out := seedLab(t)
			if err := os.Remove(filepath.Join(out, "pki", tc.remove)); err != nil {
				t.Fatal(err)
			}
			before := snapshotDir(t, out)
			want := "labbake: pki: " + filepath.Join(out, "pki", tc.remove) + ": missing while "
			for _, args := range [][]string{{"seed", "--all"}, {"seed", "n1"}, {"pki", "renew"}} {
				if tc.renews && args[0] == "pki" {
					continue
				}
				_, stderr, code := run(t, append([]string{"-C", lab}, args...)...)
				if code != 2 || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, tc.fix) {
					t.Errorf("%s: exit %d, stderr %q; want 2, %q… and %q", strings.Join(args, " "), code, stderr, want, tc.fix)
				}
				after := snapshotDir(t, out)
				for p, v := range after {
					if before[p] != v {
						t.Errorf("%s changed %s", strings.Join(args, " "), p)
					}
				}
				for p := range before {
					if _, ok := after[p]; !ok {
						t.Errorf("%s removed %s", strings.Join(args, " "), p)
					}
				}
			}
			if !tc.renews {
				return
			}
			if _, stderr, code := run(t, "-C", lab, "pki", "renew"); code != 0 {
				t.Fatalf("pki renew: exit %d\n%s", code, stderr)
			}
			if _, err := os.Stat(filepath.Join(out, "pki", tc.remove)); err != nil {
				t.Errorf("pki renew did not re-issue %s: %v", tc.remove, err)
			}
			if _, stderr, code := run(t, "-C", lab, "seed", "--all"); code != 0 {
				t.Errorf("seed --all after renew: exit %d\n%s", code, stderr)
			}
		})
	}
}

// TestTestNodeRefusals: labbake test --node refuses, exit 2 in one line
// and before booting anything, a machine not in lab.yaml, one of another
// role, one without its seed, and --ssh-port without --node.
func TestTestNodeRefusals(t *testing.T) {
	lab, out := seedLab(t)
	for _, role := range []string{"master", "node"} {
		if err := os.WriteFile(filepath.Join(out, role+".qcow2"), []byte("not booted"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(out, "seed", "n1.iso")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"test", "master", "--node", "zz"}, "labbake: --node zz: no such machine in lab.yaml (machines: master, n1)"},
		{[]string{"test", "master", "--node", "n1"}, "labbake: --node n1: that machine's role is node, not master"},
		{[]string{"test", "node", "--node", "n1"}, "labbake: --node n1: " + filepath.Join(out, "seed", "n1.iso") + " does not exist: run labbake seed n1 first"},
		{[]string{"test", "master", "--ssh-port", "2222"}, "labbake: --ssh-port needs --node: only a machine has an address to forward to"},
		{[]string{"test", "master", "--node", "master", "--ssh-port", "70000"}, "labbake: --ssh-port 70000: want a TCP port"},
	} {
		_, stderr, code := run(t, append([]string{"-C", lab}, tc.args...)...)
		if code != 2 || strings.TrimSpace(stderr) != tc.want {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "test")); !os.IsNotExist(err) {
		t.Errorf("a refused test wrote its log dir: %v", err)
	}
}
