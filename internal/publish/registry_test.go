package publish

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// registryBinary is Debian's docker-registry (distribution).
const registryBinary = "/usr/bin/docker-registry"

// testRegistry is a real docker-registry on 127.0.0.1 with its storage in
// a temporary dir, optionally behind basic auth and TLS from a test CA.
type testRegistry struct {
	addr    string
	storage string
	certDir string // ca.crt for TLS; "" without TLS
	user    string
	pass    string
	out     *bytes.Buffer
}

type registryConfig struct{ auth, tls bool }

func requireTool(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath(path); err != nil {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s: %v", path, err)
		}
		t.Skipf("%s not installed: %v", path, err)
	}
}

func startRegistry(t *testing.T, c registryConfig) *testRegistry {
	t.Helper()
	requireTool(t, registryBinary)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	dir := t.TempDir()
	r := &testRegistry{addr: addr, storage: filepath.Join(dir, "data"), out: &bytes.Buffer{}}
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", r.storage, addr)
	scheme := "http"
	client := &http.Client{Timeout: time.Second}
	if c.tls {
		scheme = "https"
		r.certDir = filepath.Join(dir, "certs")
		cert, key, pool := testCA(t, r.certDir)
		conf += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", cert, key)
		client.Transport = &http.Transport{TLSClientConfig: tlsConfig(pool)}
	}
	if c.auth {
		r.user, r.pass = "lab", "s3cret-pass"
		h, err := bcrypt.GenerateFromPassword([]byte(r.pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		pw := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(pw, []byte(r.user+":"+string(h)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		conf += fmt.Sprintf("auth:\n  htpasswd:\n    realm: labbake-test\n    path: %s\n", pw)
	}
	cf := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(registryBinary, "serve", cf)
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(scheme + "://" + addr + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on %s did not come up: %v\n%s", addr, err, r.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// options are what a user would give labbake for this registry.
func (r *testRegistry) options() *Options {
	o := &Options{TLSVerify: r.certDir != "", CertDir: r.certDir, AuthFile: filepath.Join(os.TempDir(), "labbake-test-no-auth.json")}
	if r.user != "" {
		o.Creds = r.user + ":" + r.pass
	}
	return o
}

// blobPath is where the registry stores a blob.
func (r *testRegistry) blobPath(hex string) string {
	return filepath.Join(r.storage, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")
}

// testCA writes a CA and a server certificate for 127.0.0.1 signed by it;
// certDir gets ca.crt (as containers/image's cert dirs hold it).
func testCA(t *testing.T, certDir string) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "labbake test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(filepath.Dir(certDir), name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", "CERTIFICATE", caDER)
	if err := os.Rename(caFile, filepath.Join(certDir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return write("server.crt", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER), pool
}

func tlsConfig(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }
