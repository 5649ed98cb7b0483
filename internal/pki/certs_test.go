package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// caTable is every CA of a lab.
var caTable = []struct{ file, cn string }{
	{"ca.crt", "kubernetes-ca"},
	{"etcd/ca.crt", "etcd-ca"},
	{"front-proxy-ca.crt", "kubernetes-front-proxy-ca"},
}

// leafTable is every leaf certificate of testSpec's lab, as the
// components need them ("PKI certificates and requirements", the Node
// authorizer, the built-in RBAC bindings of system:kube-controller-manager,
// system:kube-scheduler and system:kube-proxy).
var leafTable = []struct {
	file   string
	ca     string
	cn     string
	org    []string
	sans   []string
	server bool
	client bool
}{
	{"apiserver.crt", "ca.crt", "kube-apiserver", nil, []string{
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
		"localhost", "master", "10.100.0.1", "127.0.0.1", "172.18.0.10"}, true, false},
	{"apiserver-kubelet-client.crt", "ca.crt", "kube-apiserver-kubelet-client", []string{"kubeadm:cluster-admins"}, nil, false, true},
	{"apiserver-etcd-client.crt", "etcd/ca.crt", "kube-apiserver-etcd-client", nil, nil, false, true},
	{"front-proxy-client.crt", "front-proxy-ca.crt", "front-proxy-client", nil, nil, false, true},
	{"admin.crt", "ca.crt", "kubernetes-admin", []string{"system:masters"}, nil, false, true},
	{"controller-manager.crt", "ca.crt", "system:kube-controller-manager", nil, nil, false, true},
	{"scheduler.crt", "ca.crt", "system:kube-scheduler", nil, nil, false, true},
	{"kube-proxy.crt", "ca.crt", "system:kube-proxy", nil, nil, false, true},
	{"machines/master/kubelet-client.crt", "ca.crt", "system:node:master", []string{"system:nodes"}, nil, false, true},
	{"machines/master/kubelet.crt", "ca.crt", "system:node:master", []string{"system:nodes"}, []string{"master", "172.18.0.10"}, true, false},
	{"machines/master/etcd-server.crt", "etcd/ca.crt", "master", nil, []string{"master", "localhost", "172.18.0.10", "127.0.0.1"}, true, true},
	{"machines/master/etcd-peer.crt", "etcd/ca.crt", "master", nil, []string{"master", "172.18.0.10"}, true, true},
	{"machines/node1/kubelet-client.crt", "ca.crt", "system:node:node1", []string{"system:nodes"}, nil, false, true},
	{"machines/node1/kubelet.crt", "ca.crt", "system:node:node1", []string{"system:nodes"}, []string{"node1", "172.18.0.11"}, true, false},
	{"machines/node2/kubelet-client.crt", "ca.crt", "system:node:node2", []string{"system:nodes"}, nil, false, true},
	{"machines/node2/kubelet.crt", "ca.crt", "system:node:node2", []string{"system:nodes"}, []string{"node2", "172.18.0.12"}, true, false},
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCertPEM(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func TestCertificates(t *testing.T) {
	dir, _ := newLab(t, testSpec())
	start := now.Add(-backdate)

	// The tables name every certificate there is.
	var want []string
	for _, c := range caTable {
		want = append(want, c.file)
	}
	for _, l := range leafTable {
		want = append(want, l.file)
	}
	slices.Sort(want)
	var got []string
	for _, f := range files(snapshot(t, dir)) {
		if strings.HasSuffix(f, ".crt") {
			got = append(got, f)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("certificates in the PKI directory:\n got %v\nwant %v", got, want)
	}

	cas := map[string]*x509.Certificate{}
	for _, tc := range caTable {
		t.Run(tc.file, func(t *testing.T) {
			c := readCert(t, filepath.Join(dir, tc.file))
			cas[tc.file] = c
			if c.Subject.String() != "CN="+tc.cn || c.Issuer.String() != "CN="+tc.cn {
				t.Errorf("subject %q issuer %q, want CN=%s self-issued", c.Subject, c.Issuer, tc.cn)
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if !c.IsCA || !c.BasicConstraintsValid {
				t.Error("not a CA")
			}
			if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
				t.Errorf("key usage %b, want %b", c.KeyUsage, want)
			}
			if len(c.ExtKeyUsage) != 0 || len(c.DNSNames)+len(c.IPAddresses) != 0 {
				t.Errorf("extended key usage %v, SANs %v: want none", c.ExtKeyUsage, certSANs(c))
			}
			if !c.NotBefore.Equal(start) || !c.NotAfter.Equal(start.AddDate(10, 0, 0)) {
				t.Errorf("valid %v to %v, want %v for 10 years", c.NotBefore, c.NotAfter, start)
			}
			if c.PublicKeyAlgorithm != x509.ECDSA || c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
				t.Errorf("key %v signed with %v, want ECDSA P-256 with SHA-256", c.PublicKeyAlgorithm, c.SignatureAlgorithm)
			}
		})
	}

	for _, tc := range leafTable {
		t.Run(tc.file, func(t *testing.T) {
			c := readCert(t, filepath.Join(dir, tc.file))
			ca := cas[tc.ca]
			if c.Subject.CommonName != tc.cn || !slices.Equal(c.Subject.Organization, tc.org) {
				t.Errorf("subject %q, want CN=%s O=%v", c.Subject, tc.cn, tc.org)
			}
			if len(c.Subject.OrganizationalUnit)+len(c.Subject.Country)+len(c.Subject.Locality) != 0 {
				t.Errorf("subject %q has more than CN and O", c.Subject)
			}
			if got := certSANs(c); !slices.Equal(got, tc.sans) {
				t.Errorf("SANs %v, want %v", got, tc.sans)
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("key usage %b, want digital signature only (ECDSA)", c.KeyUsage)
			}
			var eku []x509.ExtKeyUsage
			if tc.server {
				eku = append(eku, x509.ExtKeyUsageServerAuth)
			}
			if tc.client {
				eku = append(eku, x509.ExtKeyUsageClientAuth)
			}
			if !slices.Equal(c.ExtKeyUsage, eku) {
				t.Errorf("extended key usage %v, want %v", c.ExtKeyUsage, eku)
			}
			if c.IsCA {
				t.Error("a leaf is a CA")
			}
			if !c.NotBefore.Equal(start) || !c.NotAfter.Equal(start.AddDate(1, 0, 0)) {
				t.Errorf("valid %v to %v, want %v for 1 year", c.NotBefore, c.NotAfter, start)
			}
			if c.Issuer.String() != ca.Subject.String() {
				t.Errorf("issuer %q, want %q", c.Issuer, ca.Subject)
			}
			if err := c.CheckSignatureFrom(ca); err != nil {
				t.Errorf("not signed by %s: %v", tc.ca, err)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 64 {
				t.Errorf("serial %v is not a positive random number", c.SerialNumber)
			}
		})
	}
}

// TestOpenSSLVerify has openssl chain every leaf to its CA for the
// purposes it is used for.
func TestOpenSSLVerify(t *testing.T) {
	dir, _ := newLab(t, testSpec())
	serials := map[string]string{}
	for _, tc := range leafTable {
		leaf := filepath.Join(dir, tc.file)
		var purposes []string
		if tc.server {
			purposes = append(purposes, "sslserver")
		}
		if tc.client {
			purposes = append(purposes, "sslclient")
		}
		for _, p := range purposes {
			out := command(t, "openssl", "verify", "-x509_strict", "-purpose", p, "-CAfile", filepath.Join(dir, tc.ca), leaf)
			if strings.TrimSpace(out) != leaf+": OK" {
				t.Errorf("openssl verify -purpose %s %s: %s", p, tc.file, out)
			}
		}
		// Another CA does not verify it.
		other := "ca.crt"
		if tc.ca == "ca.crt" {
			other = "etcd/ca.crt"
		}
		if out, err := execOut("openssl", "verify", "-CAfile", filepath.Join(dir, other), leaf); err == nil {
			t.Errorf("%s verifies against %s too:\n%s", tc.file, other, out)
		}
		s := strings.TrimSpace(command(t, "openssl", "x509", "-noout", "-serial", "-in", leaf))
		if prev, ok := serials[s]; ok {
			t.Errorf("%s and %s have the same %s", prev, tc.file, s)
		}
		serials[s] = tc.file
	}
	// A server certificate is not a client one and the other way round.
	for _, c := range []struct{ file, purpose string }{{"apiserver.crt", "sslclient"}, {"admin.crt", "sslserver"}} {
		if out, err := execOut("openssl", "verify", "-purpose", c.purpose, "-CAfile", filepath.Join(dir, "ca.crt"), filepath.Join(dir, c.file)); err == nil {
			t.Errorf("%s verifies for %s:\n%s", c.file, c.purpose, out)
		}
	}
	// openssl reads every private key and finds it belongs to its certificate.
	for _, f := range files(snapshot(t, dir)) {
		if !strings.HasSuffix(f, ".crt") {
			continue
		}
		base := filepath.Join(dir, strings.TrimSuffix(f, ".crt"))
		certPub := command(t, "openssl", "x509", "-noout", "-pubkey", "-in", base+".crt")
		keyPub := command(t, "openssl", "pkey", "-pubout", "-in", base+".key")
		if certPub != keyPub {
			t.Errorf("%s.key is not the key of %s", f, f)
		}
	}
}
