package gobuild

import (
	"bytes"
	"testing"
)

// A lock key either parses to a Key that renders back to itself, or is
// refused; nothing panics.
func FuzzParseKey(f *testing.F) {
	f.Add("gosum example.com/m@v1.0.0 . go1.26.8")
	f.Add("gosum k8s.io/kubernetes@v1.37.2 cmd/kube-proxy,cmd/kubelet go1.26.8 staging")
	f.Add("go example.com/m@v1.0.0-rc.1+meta cmd/a go1.27rc1 linux/amd64 sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		if k.String() != s {
			t.Fatalf("ParseKey(%q) renders as %q", s, k.String())
		}
	})
}

// An index either parses to one that renders back to the same bytes, each
// path staying under the proxy's root, or is refused.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef example.com/a/@v/v1.0.0.mod\n"))
	f.Add([]byte("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef github.com/!burnt!sushi/toml/@v/v1.6.0.zip\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := ParseIndex(data)
		if err != nil {
			return
		}
		if !bytes.Equal(x.Bytes(), data) {
			t.Fatalf("ParseIndex(%q) renders as %q", data, x.Bytes())
		}
		for _, f := range x {
			if !cleanRel(f.Path) {
				t.Fatalf("path %q leaves the root", f.Path)
			}
		}
	})
}
