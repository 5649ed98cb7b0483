package pki

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/labbake/labbake/internal/golden"
)

// kubectlView is what `kubectl config view -o json --raw` prints, in part.
type kubectlView struct {
	Clusters []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server string `json:"server"`
			CAData string `json:"certificate-authority-data"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			CertData string `json:"client-certificate-data"`
			KeyData  string `json:"client-key-data"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	CurrentContext string `json:"current-context"`
}

// checkKubeconfig has kubectl read a kubeconfig and checks it names the
// cluster, server, CA and client certificate it should, and openssl that
// the embedded key is the certificate's.
func checkKubeconfig(t *testing.T, conf []byte, server string, caPEM []byte, cn string) {
	t.Helper()
	dir := t.TempDir()
	f := writeFile(t, filepath.Join(dir, "kubeconfig"), conf, 0o600)
	out := command(t, "kubectl", "config", "view", "--kubeconfig", f, "-o", "json", "--raw")
	var v kubectlView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("kubectl config view: %v\n%s", err, out)
	}
	if len(v.Clusters) != 1 || len(v.Users) != 1 || len(v.Contexts) != 1 {
		t.Fatalf("kubectl sees %d clusters, %d users, %d contexts; want one each", len(v.Clusters), len(v.Users), len(v.Contexts))
	}
	c, u, x := v.Clusters[0], v.Users[0], v.Contexts[0]
	if c.Name != "lab1" || c.Cluster.Server != server {
		t.Errorf("cluster %q at %q, want lab1 at %s", c.Name, c.Cluster.Server, server)
	}
	if v.CurrentContext != x.Name || x.Context.Cluster != c.Name || x.Context.User != u.Name || u.Name != cn {
		t.Errorf("current context %q = %+v, user %q: want the one context of user %s", v.CurrentContext, x.Context, u.Name, cn)
	}
	decode := func(what, s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return b
	}
	if ca := decode("CA data", c.Cluster.CAData); !bytes.Equal(ca, caPEM) {
		t.Errorf("the CA data is not ca.crt:\n%s", ca)
	}
	certPEM, keyPEM := decode("client cert", u.User.CertData), decode("client key", u.User.KeyData)
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != cn {
		t.Errorf("client certificate CN %q, want %q", cert.Subject.CommonName, cn)
	}
	crt := writeFile(t, filepath.Join(dir, "client.crt"), certPEM, 0o644)
	key := writeFile(t, filepath.Join(dir, "client.key"), keyPEM, 0o600)
	ca := writeFile(t, filepath.Join(dir, "ca.crt"), caPEM, 0o644)
	if a, b := command(t, "openssl", "x509", "-noout", "-pubkey", "-in", crt), command(t, "openssl", "pkey", "-pubout", "-in", key); a != b {
		t.Errorf("the client key is not the client certificate's:\n%s\n%s", a, b)
	}
	command(t, "openssl", "verify", "-purpose", "sslclient", "-CAfile", ca, crt)
}

func TestKubeconfigs(t *testing.T) {
	dir, p := newLab(t, testSpec())
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	const server = "https://172.18.0.10:6443"
	if p.Server() != server {
		t.Errorf("Server() = %q, want %q", p.Server(), server)
	}
	for _, m := range []struct{ machine, file, cn string }{
		{"master", "/etc/kubernetes/admin.conf", "kubernetes-admin"},
		{"master", "/etc/kubernetes/controller-manager.conf", "system:kube-controller-manager"},
		{"master", "/etc/kubernetes/scheduler.conf", "system:kube-scheduler"},
		{"master", "/etc/kubernetes/kubelet.conf", "system:node:master"},
		{"master", "/etc/kubernetes/kube-proxy.conf", "system:kube-proxy"},
		{"node1", "/etc/kubernetes/kubelet.conf", "system:node:node1"},
		{"node1", "/etc/kubernetes/kube-proxy.conf", "system:kube-proxy"},
		{"node2", "/etc/kubernetes/kubelet.conf", "system:node:node2"},
	} {
		t.Run(m.machine+m.file, func(t *testing.T) {
			fs, err := p.MachineFiles(m.machine)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				if f.Path == m.file {
					if f.Mode != 0o600 {
						t.Errorf("mode %v, want 0600", f.Mode)
					}
					checkKubeconfig(t, f.Content, server, caPEM, m.cn)
					return
				}
			}
			t.Fatalf("%s has no %s", m.machine, m.file)
		})
	}
	t.Run("admin forwarded", func(t *testing.T) {
		const fwd = "https://127.0.0.1:16443"
		b, err := p.AdminKubeconfig(fwd)
		if err != nil {
			t.Fatal(err)
		}
		checkKubeconfig(t, b, fwd, caPEM, "kubernetes-admin")
		def, err := p.AdminKubeconfig("")
		if err != nil {
			t.Fatal(err)
		}
		checkKubeconfig(t, def, server, caPEM, "kubernetes-admin")
		if !bytes.Equal(bytes.Replace(b, []byte(fwd), []byte(server), 1), def) {
			t.Error("the forwarded admin kubeconfig differs from the default one by more than its server")
		}
	})
}

// TestKubeconfigGolden pins the layout of a kubeconfig (with stand-in
// credentials, so the file does not change with every run).
func TestKubeconfigGolden(t *testing.T) {
	b, err := renderKubeconfig("lab1", "https://172.18.0.10:6443", []byte("CA PEM\n"), "kubernetes-admin", []byte("CERT PEM\n"), []byte("KEY PEM\n"))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "admin.kubeconfig"), b)
	again, err := renderKubeconfig("lab1", "https://172.18.0.10:6443", []byte("CA PEM\n"), "kubernetes-admin", []byte("CERT PEM\n"), []byte("KEY PEM\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, again) {
		t.Error("the same kubeconfig rendered twice differs")
	}
}
