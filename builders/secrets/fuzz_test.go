package secrets

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// FuzzDetect feeds the detector arbitrary bytes (it must not panic), then
// the same bytes with a key planted at a position the fuzzer picks: the key
// must be found, whatever surrounds it.
func FuzzDetect(f *testing.F) {
	k := genKeys()
	type planted struct{ data, kind string }
	jsonKey, err := json.Marshal(map[string]string{"private_key": rsaPEM()})
	if err != nil {
		f.Fatal(err)
	}
	keys := []planted{
		{pemOf("PRIVATE KEY", der(x509.MarshalPKCS8PrivateKey(k.ed))), "PKCS#8 private key"},
		{pemOf("EC PRIVATE KEY", der(x509.MarshalECPrivateKey(k.ec))), "EC private key"},
		{rsaPEM(), "RSA private key"},
		{puttyKey(), "PuTTY private key"},
		{string(jsonKey), "RSA private key"},
		{"client-key-data: " + base64.StdEncoding.EncodeToString([]byte(pemOf("EC PRIVATE KEY", der(x509.MarshalECPrivateKey(k.ec))))) + "\n",
			"EC private key (base64-encoded PEM)"},
	}
	f.Add([]byte(""), uint16(0), uint8(0))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"), uint16(3), uint8(1))
	f.Add([]byte("PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nPrivate-Lines: 2\nAAAA\n"), uint16(40), uint8(3))
	f.Add([]byte("LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCg==\\n-----BEGIN "), uint16(7), uint8(5))
	f.Add([]byte(certPEM()), uint16(100), uint8(2))
	f.Add(der(x509.MarshalPKCS8PrivateKey(k.ed)), uint16(0), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, at uint16, which uint8) {
		detect(data, true)
		detect(data, false)
		key := keys[int(which)%len(keys)]
		pos := 0
		if len(data) > 0 {
			pos = int(at) % (len(data) + 1)
		}
		mixed := make([]byte, 0, len(data)+len(key.data))
		mixed = append(append(append(mixed, data[:pos]...), key.data...), data[pos:]...)
		// The planted key is always found. The bytes around it may make
		// another finding with it (they can build a PuTTY file around
		// base64), but not without an anchor of their own.
		got := detect(mixed, false)
		if got == "" || (got != key.kind && !hasAnchor(data)) {
			t.Fatalf("planted %q at %d: detect = %q\n%q", key.kind, pos, got, mixed)
		}
	})
}

func hasAnchor(data []byte) bool {
	for _, a := range [][]byte{anchorPrivate, anchorPuTTY, anchorB64PEM} {
		if bytes.Contains(data, a) {
			return true
		}
	}
	return false
}
