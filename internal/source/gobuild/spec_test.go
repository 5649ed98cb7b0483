package gobuild

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := Spec{Module: "k8s.io/kubernetes", Version: "v1.37.2", Packages: []string{"cmd/kubelet"}}
	for _, tc := range []struct {
		name string
		edit func(s *Spec)
		want []string // the problems, in order; none: valid
	}{
		{"minimal", func(*Spec) {}, nil},
		{"everything", func(s *Spec) {
			s.Packages = []string{"cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy"}
			s.ReplaceStaging, s.Tags, s.Toolchain = true, []string{"selinux", "notest"}, "go1.26.8"
			s.LDFlags = []string{"-s", "-w", "-X k8s.io/component-base/version.gitVersion=v1.37.2"}
		}, nil},
		{"module root and pseudo-version", func(s *Spec) {
			s.Module, s.Version, s.Packages = "go.etcd.io/etcd/server/v3", "v3.6.0-alpha.0.20250101000000-0123456789ab", []string{"."}
		}, nil},
		{"missing", func(s *Spec) { *s = Spec{} }, []string{"module: required", "version: required", "packages: required"}},
		{"not semver", func(s *Spec) { s.Version = "1.37.2" }, []string{`version: "1.37.2" is not a semantic version tag`}},
		{"branch", func(s *Spec) { s.Version = "master" }, []string{`version: "master" is not a semantic version tag`}},
		{"bad module", func(s *Spec) { s.Module = "kubernetes" }, []string{"module: \"kubernetes\" is not a module path: its first element is a lower-case domain"}},
		{"module with ..", func(s *Spec) { s.Module = "example.com/../x" }, []string{`module: "example.com/../x" is not a module path`}},
		{"outside", func(s *Spec) {
			s.Packages = []string{"github.com/other/cmd/x", "../x", "/abs", "cmd/../../x"}
		}, []string{
			`packages[0]: package "github.com/other/cmd/x" is outside module k8s.io/kubernetes`,
			`packages[1]: package "../x" is outside module k8s.io/kubernetes`,
			`packages[2]: package "/abs": want a path relative to module`,
			`packages[3]: package "cmd/../../x" is outside module`,
		}},
		{"twice", func(s *Spec) { s.Packages = []string{"cmd/kubelet", "k8s.io/kubernetes/cmd/kubelet"} }, []string{"packages[1]: package k8s.io/kubernetes/cmd/kubelet is listed twice (also packages[0])"}},
		{"same name", func(s *Spec) { s.Packages = []string{"cmd/x", "tools/x"} }, []string{"packages[1]: package tools/x builds to x, as packages[0] does"}},
		{"ldflags", func(s *Spec) { s.LDFlags = []string{"-s", "-X a=b\n-X c=d", "", "-buildid=abc"} }, []string{
			`ldflags[1]: "-X a=b\n-X c=d" holds a line break`, "ldflags[2]: empty", "ldflags[3]: labbake sets -buildid= itself"}},
		{"tags", func(s *Spec) { s.Tags = []string{"ok_1", "no-dash", "a,b"} }, []string{`tags[1]: "no-dash" is not a build tag`, `tags[2]: "a,b" is not a build tag`}},
		{"toolchain", func(s *Spec) { s.Toolchain = "1.26.8" }, []string{`toolchain: "1.26.8" is not a Go release`}},
		{"staging", func(s *Spec) { s.Module, s.Version, s.ReplaceStaging = "example.com/x", "v2.0.0", true }, []string{"replace_staging: staging modules are published as v0.N.M for Kubernetes versions v1.N.M only, not for v2.0.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			s.Packages = append([]string(nil), ok.Packages...)
			tc.edit(&s)
			err := s.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", s)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("problem %d = %q, want %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestNamesAndKeys(t *testing.T) {
	s := Spec{Module: "go.etcd.io/etcd/server/v3", Version: "v3.6.17", Packages: []string{"."}, Toolchain: "go1.26.8"}
	if n := s.Names(); len(n) != 1 || n[0] != "server" {
		t.Errorf("names %q, want server (go build's name for a /v3 module root)", n)
	}
	if got := s.Name(); got != "go.etcd.io/etcd/server/v3@v3.6.17" {
		t.Errorf("name %q", got)
	}
	k := Spec{Module: "k8s.io/kubernetes", Version: "v1.37.2", Packages: []string{"k8s.io/kubernetes/cmd/kubelet", "cmd/kube-proxy"}, ReplaceStaging: true, Toolchain: "go1.26.8"}
	if got := k.SumKey().String(); got != "gosum k8s.io/kubernetes@v1.37.2 cmd/kube-proxy,cmd/kubelet go1.26.8 staging" {
		t.Errorf("sum key %q", got)
	}
	if got := k.ImportPaths(); strings.Join(got, " ") != "k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy" {
		t.Errorf("import paths %q", got)
	}
	bk := k.BinaryKey().String()
	if !strings.HasPrefix(bk, "go k8s.io/kubernetes@v1.37.2 cmd/kube-proxy,cmd/kubelet go1.26.8 linux/amd64 sha256:") {
		t.Errorf("binary key %q", bk)
	}
	// The options are in the key; the order of the packages is not.
	k2 := k
	k2.Packages = []string{"cmd/kube-proxy", "cmd/kubelet"}
	k3 := k
	k3.LDFlags = []string{"-s"}
	if k2.BinaryKey().String() != bk || k3.BinaryKey().String() == bk || k.BuildKey("sha256:1") == k.BuildKey("sha256:2") {
		t.Errorf("keys do not follow the inputs")
	}
	for _, key := range []Key{k.SumKey(), k.BinaryKey(), s.SumKey(), s.BinaryKey()} {
		got, err := ParseKey(key.String())
		if err != nil || got.String() != key.String() {
			t.Errorf("ParseKey(%q) = %q, %v", key, got, err)
		}
	}
	// The default toolchain is labbake's.
	if got := (Spec{}).Normalize().Toolchain; got != DefaultToolchain() || !toolchainRE.MatchString(got) {
		t.Errorf("default toolchain %q", got)
	}
}

func TestParseKey(t *testing.T) {
	const opt = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ key, err string }{
		{"gosum example.com/m@v1.0.0 . go1.26.8", ""},
		{"gosum example.com/m@v1.0.0 cmd/a,cmd/b go1.26.8 staging", ""},
		{"go example.com/m@v1.0.0 cmd/a go1.26.8 linux/amd64 " + opt, ""},
		{"gosum example.com/m@v1.0.0 . go1.26.8 extra", "want \"gosum"},
		{"go example.com/m@v1.0.0 . go1.26.8 linux/amd64", "want \"go "},
		{"go example.com/m@v1.0.0 . go1.26.8 linux amd64", "is not GOOS/GOARCH"},
		{"go example.com/m@v1.0.0 . go1.26.8 Linux/amd64 " + opt, "is not GOOS/GOARCH"},
		{"go example.com/m@v1.0.0 . go1.26.8 linux/amd64 sha256:00", "is not a sha256 digest"},
		{"gosum example.com/m . go1.26.8", "is not MODULE@VERSION"},
		{"gosum example.com/m@latest . go1.26.8", "not a semantic version"},
		{"gosum example.com/m@v1.0.0 cmd/b,cmd/a go1.26.8", "want them sorted"},
		{"gosum example.com/m@v1.0.0 cmd/a,cmd/a go1.26.8", "want them sorted, each once"},
		{"gosum example.com/m@v1.0.0 example.com/m/cmd/a go1.26.8", "want it relative to the module"},
		{"gosum example.com/m@v1.0.0 ../a go1.26.8", "outside module"},
		{"gosum example.com/m@v1.0.0 . 1.26", "is not a Go release"},
		{"gosum  example.com/m@v1.0.0 . go1.26.8", ""}, // two spaces: an empty field
		{"goo example.com/m@v1.0.0 . go1.26.8", "unknown kind"},
		{"gosum", "want KIND"},
	} {
		_, err := ParseKey(tc.key)
		switch {
		case tc.err == "" && tc.key == "gosum  example.com/m@v1.0.0 . go1.26.8":
			if err == nil {
				t.Errorf("ParseKey(%q) accepted an empty field", tc.key)
			}
		case tc.err == "" && err != nil:
			t.Errorf("ParseKey(%q): %v", tc.key, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseKey(%q) = %v, want %q", tc.key, err, tc.err)
		}
	}
}

func TestIndex(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	x := Index{{Path: "github.com/!burnt!sushi/toml/@v/v1.6.0.zip", Digest: d}, {Path: "example.com/a/@v/v1.0.0.mod", Digest: d}}
	got, err := ParseIndex(x.Bytes())
	if err != nil || len(got) != 2 || got[0].Path != "example.com/a/@v/v1.0.0.mod" {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if moduleOf(x[0].Path) != "github.com/BurntSushi/toml@v1.6.0" {
		t.Errorf("moduleOf %q", moduleOf(x[0].Path))
	}
	for _, tc := range []struct{ data, err string }{
		{"", "empty"},
		{d + " example.com/a/@v/v1.0.0.mod", "no newline"},
		{d + " ../etc/@v/v1.0.0.mod\n", "is not MODULE/@v/VERSION.EXT"},
		{d + " /abs/@v/v1.0.0.mod\n", "is not MODULE/@v/VERSION.EXT"},
		{d + " example.com/a/@v/list\n", "not a .info, .mod or .zip"},
		{d + " example.com/a/@v/latest.mod\n", "not a semantic version"},
		{d + " example.com/A/@v/v1.0.0.mod\n", "upper-case"},
		{d + " example.com/a/@v/v1.0.0.mod\n" + d + " example.com/a/@v/v1.0.0.mod\n", "out of order or repeated"},
		{"sha256:xyz example.com/a/@v/v1.0.0.mod\n", "not a sha256 digest"},
		{d + "\n", "want DIGEST PATH"},
	} {
		if _, err := ParseIndex([]byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseIndex(%q) = %v, want %q", tc.data, err, tc.err)
		}
	}
}
