package pki

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/golden"
	"go.yaml.in/yaml/v3"
)

// TestMachineFilesLayout pins what each kind of machine gets, where, with
// which mode.
func TestMachineFilesLayout(t *testing.T) {
	_, p := newLab(t, testSpec())
	for _, name := range []string{"master", "node1"} {
		t.Run(name, func(t *testing.T) {
			fs, err := p.MachineFiles(name)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, f := range fs {
				fmt.Fprintf(&b, "%04o %s\n", f.Mode, f.Path)
			}
			golden.Check(t, filepath.Join("testdata", "files-"+name+".txt"), []byte(b.String()))
			if !slices.IsSortedFunc(fs, func(a, b File) int { return strings.Compare(a.Path, b.Path) }) {
				t.Error("not sorted by path")
			}
		})
	}
	if _, err := p.MachineFiles("nosuch"); err == nil {
		t.Error("MachineFiles of a machine not in the lab")
	}
}

// privateKeys finds every private key in a machine's files: PEM blocks in
// the files and in the kubeconfigs' embedded data.
func privateKeys(t *testing.T, files []File) map[string][]crypto.PublicKey {
	t.Helper()
	out := map[string][]crypto.PublicKey{}
	scan := func(where string, data []byte) {
		for {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				return
			}
			if !strings.Contains(block.Type, "PRIVATE KEY") {
				continue
			}
			k, err := parseKeyPEM(pem.EncodeToMemory(block))
			if err != nil {
				t.Fatalf("%s: a %s block that does not parse: %v", where, block.Type, err)
			}
			out[where] = append(out[where], k.Public())
		}
	}
	for _, f := range files {
		scan(f.Path, f.Content)
		if !strings.HasSuffix(f.Path, ".conf") {
			continue
		}
		var kc kubeconfig
		if err := yaml.Unmarshal(f.Content, &kc); err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		for _, u := range kc.Users {
			b, err := base64.StdEncoding.DecodeString(u.User.ClientKeyData)
			if err != nil {
				t.Fatal(err)
			}
			scan(f.Path+" (embedded)", b)
		}
	}
	return out
}

func publicOf(t *testing.T, dir, name string) crypto.PublicKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	k, err := parseKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// TestMachineFilesSecrets checks from the PEM blocks themselves which
// private keys a seed carries: a node only its own kubelet's and
// kube-proxy's, a control plane also the CA, front-proxy CA and
// service-account keys, but never the etcd CA's.
func TestMachineFilesSecrets(t *testing.T) {
	dir, p := newLab(t, testSpec())
	forbiddenOnNodes := []string{"ca.key", "front-proxy-ca.key", "etcd/ca.key", "sa.key",
		"machines/master/etcd-server.key", "machines/master/etcd-peer.key", "apiserver-etcd-client.key",
		"machines/node2/kubelet.key", "machines/node2/kubelet-client.key", "machines/master/kubelet-client.key"}
	for _, tc := range []struct {
		machine string
		want    []string // every private key it must hold, as files of the PKI directory
		never   []string
	}{
		{"node1", []string{"machines/node1/kubelet.key", "machines/node1/kubelet-client.key", "kube-proxy.key"}, forbiddenOnNodes},
		{"master", []string{"ca.key", "front-proxy-ca.key", "sa.key", "apiserver.key", "apiserver-kubelet-client.key",
			"apiserver-etcd-client.key", "front-proxy-client.key", "machines/master/etcd-server.key", "machines/master/etcd-peer.key",
			"machines/master/kubelet.key", "machines/master/kubelet-client.key", "kube-proxy.key", "admin.key",
			"controller-manager.key", "scheduler.key"}, []string{"etcd/ca.key", "machines/node1/kubelet.key"}},
	} {
		t.Run(tc.machine, func(t *testing.T) {
			fs, err := p.MachineFiles(tc.machine)
			if err != nil {
				t.Fatal(err)
			}
			found := privateKeys(t, fs)
			var all []crypto.PublicKey
			for _, ks := range found {
				all = append(all, ks...)
			}
			has := func(k crypto.PublicKey) bool {
				return slices.ContainsFunc(all, func(x crypto.PublicKey) bool { return x.(*ecdsa.PublicKey).Equal(k) })
			}
			for _, name := range tc.want {
				if !has(publicOf(t, dir, name)) {
					t.Errorf("the seed lacks %s", name)
				}
			}
			for _, name := range tc.never {
				if has(publicOf(t, dir, name)) {
					t.Errorf("the seed holds %s", name)
				}
			}
			if len(all) != len(tc.want) {
				t.Errorf("the seed holds %d private keys, want %d: %v", len(all), len(tc.want), found)
			}
			for _, f := range fs {
				if strings.Contains(f.Path, "/etcd/") && tc.machine != "master" {
					t.Errorf("a node gets %s", f.Path)
				}
				if _, ok := found[f.Path]; ok && f.Mode != 0o600 {
					t.Errorf("%s holds a private key with mode %04o", f.Path, f.Mode)
				}
			}
		})
	}
}

// TestGuestFilesAreThePKIFiles checks the seed's certificates are the PKI
// directory's own bytes.
func TestGuestFilesAreThePKIFiles(t *testing.T) {
	dir, p := newLab(t, testSpec())
	fs, err := p.MachineFiles("master")
	if err != nil {
		t.Fatal(err)
	}
	from := map[string]string{
		"/etc/kubernetes/pki/ca.crt":                    "ca.crt",
		"/etc/kubernetes/pki/ca.key":                    "ca.key",
		"/etc/kubernetes/pki/apiserver.crt":             "apiserver.crt",
		"/etc/kubernetes/pki/sa.pub":                    "sa.pub",
		"/etc/kubernetes/pki/front-proxy-client.crt":    "front-proxy-client.crt",
		"/etc/kubernetes/pki/etcd/ca.crt":               "etcd/ca.crt",
		"/etc/kubernetes/pki/etcd/server.crt":           "machines/master/etcd-server.crt",
		"/etc/kubernetes/pki/etcd/peer.key":             "machines/master/etcd-peer.key",
		"/var/lib/kubelet/pki/kubelet.crt":              "machines/master/kubelet.crt",
		"/var/lib/kubelet/pki/kubelet.key":              "machines/master/kubelet.key",
		"/etc/kubernetes/pki/apiserver-etcd-client.key": "apiserver-etcd-client.key",
	}
	for _, f := range fs {
		name, ok := from[f.Path]
		if !ok {
			continue
		}
		delete(from, f.Path)
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != string(f.Content) {
			t.Errorf("%s is not %s", f.Path, name)
		}
	}
	for path := range from {
		t.Errorf("no %s", path)
	}
}
