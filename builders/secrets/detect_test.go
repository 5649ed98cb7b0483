package secrets

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// detectCase is one input of the detector and the kind it must report
// ("" for none).
type detectCase struct {
	name  string
	data  func(t *testing.T) string
	whole bool // the data is a whole file
	want  string
}

func TestDetect(t *testing.T) {
	k := genKeys()
	tests := []detectCase{
		// Keys, as the usual tools write them.
		{name: "PKCS#1 RSA (Go)", data: func(*testing.T) string { return rsaPEM() }, want: "RSA private key"},
		{name: "SEC 1 EC (Go)", data: func(t *testing.T) string { return ecPEM(t) }, want: "EC private key"},
		{name: "PKCS#8 Ed25519 (Go)", data: func(t *testing.T) string { return pkcs8PEM(t) }, want: "PKCS#8 private key"},
		{name: "PKCS#8 RSA (Go)", data: func(t *testing.T) string {
			return pemOf("PRIVATE KEY", der(x509.MarshalPKCS8PrivateKey(k.rsa)))
		}, want: "PKCS#8 private key"},
		{name: "PKCS#8 encrypted (openssl)", data: func(t *testing.T) string {
			return run(t, "", "openssl", "genpkey", "-algorithm", "ed25519", "-aes-128-cbc", "-pass", "pass:x")
		}, want: "encrypted PKCS#8 private key"},
		{name: "legacy encrypted RSA (openssl -traditional)", data: func(t *testing.T) string {
			return run(t, "", "openssl", "genrsa", "-aes128", "-passout", "pass:x", "-traditional", "1024")
		}, want: "encrypted RSA private key"},
		{name: "DSA (openssl -traditional)", data: func(t *testing.T) string {
			return opensslPipe(t, "openssl dsaparam -noout -genkey 1024 | openssl pkey -traditional")
		}, want: "DSA private key"},
		{name: "OpenSSH Ed25519 (ssh-keygen)", data: func(t *testing.T) string { p, _ := sshKeygen(t, "-t", "ed25519", "-N", ""); return p }, want: "OpenSSH private key"},
		{name: "OpenSSH ECDSA (ssh-keygen)", data: func(t *testing.T) string { p, _ := sshKeygen(t, "-t", "ecdsa", "-N", ""); return p }, want: "OpenSSH private key"},
		{name: "OpenSSH RSA with a passphrase (ssh-keygen)", data: func(t *testing.T) string {
			p, _ := sshKeygen(t, "-t", "rsa", "-b", "2048", "-N", "secret passphrase")
			return p
		}, want: "OpenSSH private key"},
		{name: "PEM RSA (ssh-keygen -m PEM)", data: func(t *testing.T) string {
			p, _ := sshKeygen(t, "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "")
			return p
		}, want: "RSA private key"},
		{name: "OpenPGP secret key (gpg)", data: func(t *testing.T) string { s, _ := gpgKeys(t); return s }, want: "OpenPGP private key"},
		{name: "PuTTY key", data: func(*testing.T) string { return puttyKey() }, want: "PuTTY private key"},
		{name: "SSH2 private key", data: func(*testing.T) string {
			body := append([]byte{0x3f, 0x6f, 0xf9, 0xeb}, make([]byte, 60)...)
			return "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: \"labbake test, a long \\\n comment\"\n" +
				wrap64(base64.StdEncoding.EncodeToString(body)) + "---- END SSH2 ENCRYPTED PRIVATE KEY ----\n"
		}, want: "SSH2 private key"},

		// Keys where people leave them.
		{name: "key after a certificate (a combined .pem)", data: func(t *testing.T) string { return certPEM() + ecPEM(t) }, want: "EC private key"},
		{name: "CRLF line ends", data: func(t *testing.T) string { return strings.ReplaceAll(pkcs8PEM(t), "\n", "\r\n") }, want: "PKCS#8 private key"},
		{name: "indented in a YAML block scalar", data: func(t *testing.T) string {
			return "tls:\n  key: |\n    " + strings.ReplaceAll(strings.TrimSpace(ecPEM(t)), "\n", "\n    ") + "\n  other: x\n"
		}, want: "EC private key"},
		{name: "JSON string with \\n escapes (a cloud service account)", data: func(t *testing.T) string {
			b, err := json.Marshal(map[string]string{"type": "service_account", "private_key": rsaPEM()})
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}, want: "RSA private key"},
		{name: "kubeconfig client-key-data", data: func(t *testing.T) string {
			return "users:\n- name: admin\n  user:\n    client-certificate-data: " + base64.StdEncoding.EncodeToString([]byte(certPEM())) +
				"\n    client-key-data: " + base64.StdEncoding.EncodeToString([]byte(ecPEM(t))) + "\n"
		}, want: "EC private key (base64-encoded PEM)"},
		{name: "base64 of a key, wrapped at 76 columns", data: func(t *testing.T) string {
			s := base64.StdEncoding.EncodeToString([]byte(pkcs8PEM(t)))
			var b strings.Builder
			for len(s) > 76 {
				b.WriteString(s[:76] + "\n")
				s = s[76:]
			}
			return b.String() + s + "\nnext: line\n"
		}, want: "PKCS#8 private key (base64-encoded PEM)"},
		{name: "PEM string in a binary", data: func(t *testing.T) string {
			return "\x7fELF\x02\x01\x01\x00\x00\x00key\x00" + pkcs8PEM(t) + "\x00\x01\x02\xff"
		}, want: "PKCS#8 private key"},
		{name: "DER PKCS#8 file", whole: true, data: func(t *testing.T) string {
			return string(der(x509.MarshalPKCS8PrivateKey(k.ec)))
		}, want: "PKCS#8 private key (DER)"},
		{name: "DER PKCS#1 file", whole: true, data: func(*testing.T) string { return string(x509.MarshalPKCS1PrivateKey(k.rsa)) }, want: "RSA private key (DER)"},
		{name: "DER SEC 1 file", whole: true, data: func(t *testing.T) string {
			return string(der(x509.MarshalECPrivateKey(k.ec)))
		}, want: "EC private key (DER)"},

		// Not keys.
		{name: "public key PEM", data: func(t *testing.T) string {
			return pemOf("PUBLIC KEY", der(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)))
		}},
		{name: "certificate PEM", data: func(*testing.T) string { return certPEM() }},
		{name: "DER certificate file", whole: true, data: func(*testing.T) string { return string(k.certDER) }},
		{name: "OpenSSH public key", data: func(t *testing.T) string { _, p := sshKeygen(t, "-t", "ed25519", "-N", ""); return p }},
		{name: "SSH2 public key (ssh-keygen -e)", data: func(t *testing.T) string {
			dir := t.TempDir()
			priv, _ := sshKeygen(t, "-t", "rsa", "-b", "2048", "-N", "")
			if err := os.WriteFile(dir+"/k", []byte(priv), 0o600); err != nil {
				t.Fatal(err)
			}
			return run(t, dir, "ssh-keygen", "-e", "-f", "k")
		}},
		{name: "OpenPGP public key (gpg)", data: func(t *testing.T) string { _, p := gpgKeys(t); return p }},
		{name: "kubeconfig with certificate data only", data: func(*testing.T) string {
			return "    client-certificate-data: " + base64.StdEncoding.EncodeToString([]byte(certPEM())) + "\n"
		}},
		{name: "shell script testing for the marker", data: func(*testing.T) string {
			return "#!/bin/sh\nif grep -q -- '-----BEGIN PRIVATE KEY-----' \"$1\"; then\n  echo \"$1 holds a key\"\nfi\n"
		}},
		{name: "python constant", data: func(*testing.T) string {
			return "PEM_HEADER = \"-----BEGIN RSA PRIVATE KEY-----\"\nPEM_FOOTER = \"-----END RSA PRIVATE KEY-----\"\n"
		}},
		{name: "Go constant followed by code", data: func(*testing.T) string {
			return "const hdr = \"-----BEGIN PRIVATE KEY-----\\n\"\nfunc f() {}\n"
		}},
		{name: "doc with a shortened example", data: func(*testing.T) string {
			return "Your key looks like:\n\n    -----BEGIN RSA PRIVATE KEY-----\n    MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi...\n    -----END RSA PRIVATE KEY-----\n"
		}},
		{name: "doc with an example body that is no key", data: func(*testing.T) string {
			return "-----BEGIN PRIVATE KEY-----\n" + wrap64(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("this is not DER. ", 20)))) + "-----END PRIVATE KEY-----\n"
		}},
		{name: "placeholder body of zeros", data: func(*testing.T) string {
			return "-----BEGIN EC PRIVATE KEY-----\n" + strings.Repeat("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", 3) + "-----END EC PRIVATE KEY-----\n"
		}},
		{name: "truncated key, no END", data: func(t *testing.T) string {
			p := pkcs8PEM(t)
			return p[:strings.Index(p, "-----END")]
		}},
		{name: "END of another label", data: func(t *testing.T) string {
			return strings.Replace(ecPEM(t), "-----END EC PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", 1)
		}},
		{name: "public key blob under an OPENSSH PRIVATE KEY label", data: func(t *testing.T) string {
			_, pub := sshKeygen(t, "-t", "ed25519", "-N", "")
			blob := strings.Fields(pub)[1]
			return "-----BEGIN OPENSSH PRIVATE KEY-----\n" + wrap64(blob) + "-----END OPENSSH PRIVATE KEY-----\n"
		}},
		{name: "legacy encrypted headers without DEK-Info", data: func(*testing.T) string {
			return "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n" + wrap64(strings.Repeat("QUJD", 40)) + "-----END RSA PRIVATE KEY-----\n"
		}},
		{name: "PuTTY format described in prose", data: func(*testing.T) string {
			return "A key file starts with PuTTY-User-Key-File-3: ssh-ed25519, then Encryption: none.\nPrivate-Lines: 1\n"
		}},
		{name: "PuTTY header with missing private lines", data: func(*testing.T) string {
			p := puttyKey()
			return p[:strings.Index(p, "Private-Lines:")] + "Private-Lines: 3\nAAAA\n"
		}},
		{name: "DER key inside a larger file is not sniffed", data: func(t *testing.T) string {
			return "header\n" + string(der(x509.MarshalPKCS8PrivateKey(k.ec)))
		}},
		{name: "plain prose", data: func(*testing.T) string { return "Keep your PRIVATE KEY safe; BEGIN by reading this." }},
		{name: "empty", data: func(*testing.T) string { return "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.data(t))
			if got := detect(data, tc.whole); got != tc.want {
				t.Errorf("detect = %q, want %q\n%s", got, tc.want, data)
			}
		})
	}
}

// opensslPipe runs a shell pipeline of openssl commands.
func opensslPipe(t *testing.T, script string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		missing(t, "openssl")
	}
	return run(t, "", "sh", "-c", script)
}

// gpgKeys makes an Ed25519 OpenPGP key in a throw-away home and returns its
// armored secret and public keys.
func gpgKeys(t *testing.T) (secret, public string) {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		missing(t, "gpg")
	}
	home, err := os.MkdirTemp("", "gpg") // short: gpg-agent's socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	base := []string{"--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""}
	run(t, "", "gpg", append(base, "--quick-gen-key", "labbake test <test@labbake.invalid>", "ed25519", "sign", "never")...)
	secret = run(t, "", "gpg", append(base, "--armor", "--export-secret-keys")...)
	public = run(t, "", "gpg", append(base, "--armor", "--export")...)
	return secret, public
}

// TestDERShape checks the DER reader on lengths and nesting.
func TestDERShape(t *testing.T) {
	long := append([]byte{0x30, 0x82, 0x01, 0x00, 0x02, 0x81, 0xfd}, make([]byte, 0xfd)...)
	tests := []struct {
		name string
		raw  []byte
		want bool
	}{
		{"sequence of an integer", []byte{0x30, 0x03, 0x02, 0x01, 0x00}, true},
		{"sequence of a sequence", []byte{0x30, 0x02, 0x30, 0x00}, true},
		{"long form lengths", long, true},
		{"trailing bytes", []byte{0x30, 0x03, 0x02, 0x01, 0x00, 0x00}, false},
		{"short", []byte{0x30, 0x05, 0x02, 0x01, 0x00}, false},
		{"not a sequence", []byte{0x31, 0x03, 0x02, 0x01, 0x00}, false},
		{"first element an octet string", []byte{0x30, 0x03, 0x04, 0x01, 0x00}, false},
		{"non-minimal length", []byte{0x30, 0x81, 0x03, 0x02, 0x01, 0x00}, false},
		{"indefinite length", []byte{0x30, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00}, false},
		{"empty", nil, false},
	}
	for _, tc := range tests {
		if got := derKeyShape(tc.raw); got != tc.want {
			t.Errorf("%s: derKeyShape = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestOpenSSHStructure checks the openssh-key-v1 reader against a key
// ssh-keygen wrote, then against damaged copies.
func TestOpenSSHStructure(t *testing.T) {
	priv, _ := sshKeygen(t, "-t", "ed25519", "-N", "")
	lines := strings.Split(strings.TrimSpace(priv), "\n")
	raw, err := base64.StdEncoding.DecodeString(strings.Join(lines[1:len(lines)-1], ""))
	if err != nil {
		t.Fatal(err)
	}
	if !openSSHKey(raw) {
		t.Fatal("ssh-keygen's key rejected")
	}
	bad := map[string][]byte{
		"truncated":      raw[:len(raw)-1],
		"trailing bytes": append(append([]byte{}, raw...), 0),
		"no keys":        binary.BigEndian.AppendUint32([]byte("openssh-key-v1\x00\x00\x00\x00\x04none\x00\x00\x00\x04none\x00\x00\x00\x00"), 0),
		"bad magic":      append([]byte("openssh-key-v2\x00"), raw[15:]...),
	}
	for name, b := range bad {
		if openSSHKey(b) {
			t.Errorf("%s: accepted", name)
		}
	}
}
