package secrets

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var testEpoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// keys are generated once per test binary with Go's crypto packages.
type testKeys struct {
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	certDER []byte
}

var genKeys = sync.OnceValue(func() testKeys {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "labbake test"},
		NotBefore: testEpoch, NotAfter: testEpoch.Add(time.Hour),
	}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &e.PublicKey, e)
	if err != nil {
		panic(err)
	}
	return testKeys{rsa: r, ec: e, ed: ed, certDER: cert}
})

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// der returns the result of a marshalling function that cannot fail on the
// test keys.
func der(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func pkcs8PEM(tb testing.TB) string {
	return pemOf("PRIVATE KEY", der(x509.MarshalPKCS8PrivateKey(genKeys().ed)))
}

func rsaPEM() string {
	return pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(genKeys().rsa))
}

func ecPEM(tb testing.TB) string {
	return pemOf("EC PRIVATE KEY", der(x509.MarshalECPrivateKey(genKeys().ec)))
}

func certPEM() string { return pemOf("CERTIFICATE", genKeys().certDER) }

// run runs a host tool and returns its standard output; the test is skipped
// when the tool is not installed (fails when LABBAKE_REQUIRE_TOOLS is set).
func run(tb testing.TB, dir string, name string, args ...string) string {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		missing(tb, name)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// sshKeygen makes a key with ssh-keygen and returns the private and public
// files' contents.
func sshKeygen(tb testing.TB, args ...string) (priv, pub string) {
	tb.Helper()
	dir := tb.TempDir()
	f := filepath.Join(dir, "key")
	run(tb, dir, "ssh-keygen", append([]string{"-q", "-f", f, "-C", "labbake test"}, args...)...)
	p, err := os.ReadFile(f)
	if err != nil {
		tb.Fatal(err)
	}
	q, err := os.ReadFile(f + ".pub")
	if err != nil {
		tb.Fatal(err)
	}
	return string(p), string(q)
}

// sshString is an SSH wire-format string.
func sshString(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

// puttyKey writes an unencrypted PuTTY version 2 key file for the ed25519
// test key, MAC included (HMAC-SHA-1 keyed with SHA-1 of
// "putty-private-key-file-mac-key", over the algorithm, encryption, comment,
// public and private blobs).
func puttyKey() string {
	ed := genKeys().ed
	pub := append(sshString([]byte("ssh-ed25519")), sshString(ed.Public().(ed25519.PublicKey))...)
	priv := sshString(ed.Seed())
	algo, enc, comment := "ssh-ed25519", "none", "labbake test"
	macKey := sha1.Sum([]byte("putty-private-key-file-mac-key"))
	m := hmac.New(sha1.New, macKey[:])
	for _, b := range [][]byte{[]byte(algo), []byte(enc), []byte(comment), pub, priv} {
		m.Write(sshString(b))
	}
	lines := func(b []byte) (int, string) {
		s := base64.StdEncoding.EncodeToString(b)
		var ls []string
		for len(s) > 64 {
			ls = append(ls, s[:64])
			s = s[64:]
		}
		ls = append(ls, s)
		return len(ls), strings.Join(ls, "\n") + "\n"
	}
	np, pl := lines(pub)
	nq, ql := lines(priv)
	var b strings.Builder
	b.WriteString("PuTTY-User-Key-File-2: " + algo + "\nEncryption: " + enc + "\nComment: " + comment + "\n")
	b.WriteString("Public-Lines: " + itoa(np) + "\n" + pl)
	b.WriteString("Private-Lines: " + itoa(nq) + "\n" + ql)
	b.WriteString("Private-MAC: " + hex.EncodeToString(m.Sum(nil)) + "\n")
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// wrap64 breaks s into lines of 64 characters.
func wrap64(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

// tarEnt is one entry of a generated tar layer.
type tarEnt struct {
	hdr  tar.Header
	body string
}

func tfile(name, body string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: testEpoch}, body: body}
}

func tdir(name string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: testEpoch}}
}

func tsymlink(name, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: testEpoch}}
}

func thardlink(name, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o600, ModTime: testEpoch}}
}

func mkTar(tb testing.TB, ents ...tarEnt) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			tb.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// missing skips the test for want of a host tool, or fails it when
// LABBAKE_REQUIRE_TOOLS is set (as in CI).
func missing(tb testing.TB, tool string) {
	tb.Helper()
	if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
		tb.Fatalf("%s not installed (LABBAKE_REQUIRE_TOOLS is set)", tool)
	}
	tb.Skipf("%s not installed", tool)
}
