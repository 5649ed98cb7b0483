package recipe

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestInputKinds(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name   string
		recipe string
		check  func(t *testing.T, r *Recipe)
		errs   []string // substrings of the expected error lines, in order
	}{
		{
			name: "debian base",
			recipe: `base:
  debian:
    suite: trixie
    variant: minbase
    packages: [linux-image-amd64, systemd-sysv, etcd-server]
    extra: [trixie-updates]
    snapshot: 20250520T000000Z
`,
			check: func(t *testing.T, r *Recipe) {
				want := &Debian{Suite: "trixie", Variant: "minbase", Packages: []string{"linux-image-amd64", "systemd-sysv", "etcd-server"}, Extra: []string{"trixie-updates"}, Snapshot: "20250520T000000Z", Pos: r.Base.Debian.Pos}
				if !reflect.DeepEqual(r.Base.Debian, want) {
					t.Errorf("debian = %+v, want %+v", r.Base.Debian, want)
				}
			},
		},
		{
			name:   "oci base and layers",
			recipe: "base: {oci: docker://registry.k8s.io/pause:3.10}\nlayers:\n  - {oci: \"oci:layout:v1\"}\n",
			check: func(t *testing.T, r *Recipe) {
				if r.Base.OCI != "docker://registry.k8s.io/pause:3.10" || len(r.Layers) != 1 || r.Layers[0].OCI != "oci:layout:v1" {
					t.Errorf("base %+v layers %+v", r.Base, r.Layers)
				}
			},
		},
		{
			name: "artifacts",
			recipe: `base: {oci: "oci:x:y"}
artifacts:
  - {url: https://dl.k8s.io/v1.32.3/bin/linux/amd64/kubelet, sha256: "` + digest + `", dest: /usr/local/bin/kubelet}
  - {url: https://dl.k8s.io/v1.32.3/bin/linux/amd64/kubectl, sha256: {url: https://dl.k8s.io/v1.32.3/bin/linux/amd64/kubectl.sha256}, dest: /usr/local/bin/kubectl, mode: "0750", owner: "0:10"}
  - {archive: https://example.org/etcd.tar.gz, sha256: "` + digest[7:] + `", extract: [etcd/etcd, etcd/etcdctl], dest: /usr/local/bin/}
  - {image: docker://registry.k8s.io/kube-apiserver:v1.32.3, path: /usr/local/bin/kube-apiserver, dest: /usr/local/bin/kube-apiserver}
  - {file: lab.yaml, dest: /etc/lab.yaml, mode: "0644"}
`,
			check: func(t *testing.T, r *Recipe) {
				if len(r.Artifacts) != 5 {
					t.Fatalf("artifacts: %+v", r.Artifacts)
				}
				a := r.Artifacts
				if a[0].URL == "" || a[0].SHA256 != digest || a[0].Mode != 0o755 {
					t.Errorf("url artifact: %+v", a[0])
				}
				if a[1].SHA256URL == "" || a[1].SHA256 != "" || a[1].Mode != 0o750 || a[1].GID != 10 {
					t.Errorf("checksum-file artifact: %+v", a[1])
				}
				if a[2].Archive == "" || a[2].SHA256 != digest || len(a[2].Extract) != 2 {
					t.Errorf("archive artifact: %+v", a[2])
				}
				if a[3].Image == "" || a[3].Path != "/usr/local/bin/kube-apiserver" {
					t.Errorf("image artifact: %+v", a[3])
				}
				if !strings.HasSuffix(a[4].File, "/lab.yaml") || a[4].Mode != 0o644 {
					t.Errorf("file artifact: %+v", a[4])
				}
			},
		},
		{
			name: "capabilities",
			recipe: `base: {oci: "oci:x:y"}
artifacts:
  - {file: lab.yaml, dest: /usr/local/bin/a, capabilities: [CAP_NET_BIND_SERVICE]}
  - {file: lab.yaml, dest: /usr/local/bin/b, capabilities: [net_raw, Cap_Net_Bind_Service]}
  - {file: lab.yaml, dest: /usr/local/bin/c, capabilities: [cap_net_bind_service, NET_RAW]}
  - {archive: https://example.org/t.tgz, sha256: "` + digest + `", extract: [bin/], dest: /opt/bin/, capabilities: [checkpoint_restore, bpf, chown]}
  - {file: lab.yaml, dest: /usr/local/bin/d, capabilities: null}
`,
			check: func(t *testing.T, r *Recipe) {
				for i, want := range [][]string{
					{"CAP_NET_BIND_SERVICE"},
					{"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"},
					{"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"},
					{"CAP_CHOWN", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"},
					nil,
				} {
					if got := r.Artifacts[i].Capabilities; !reflect.DeepEqual(got, want) {
						t.Errorf("artifacts[%d].Capabilities = %q, want %q", i, got, want)
					}
				}
			},
		},
		{
			name: "bad capabilities",
			recipe: `base: {oci: "oci:x:y"}
artifacts:
  - {file: lab.yaml, dest: /a, capabilities: [CAP_NET_BIND]}
  - {file: lab.yaml, dest: /b, capabilities: [net_raw, CAP_NET_RAW]}
  - {file: lab.yaml, dest: /c, capabilities: []}
  - {file: lab.yaml, dest: /d, capabilities: [cap_frobnicate, 10]}
  - {file: lab.yaml, dest: /e, capabilities: CAP_CHOWN}
  - {file: lab.yaml, dest: /f, capabilities: [CAP_CHOWN, "CAP_CHOWN=+ep"]}
`,
			errs: []string{
				`3:47: artifacts[0].capabilities[0]: unknown capability "CAP_NET_BIND" (did you mean CAP_NET_BIND_SERVICE?)`,
				"4:56: artifacts[1].capabilities[1]: CAP_NET_RAW is listed twice (also capabilities[0])",
				"5:46: artifacts[2].capabilities: capabilities lists none",
				`6:47: artifacts[3].capabilities[0]: unknown capability "cap_frobnicate" (the names of capabilities(7), such as CAP_NET_BIND_SERVICE`,
				"6:63: artifacts[3].capabilities[1]: expected a string, got the integer 10",
				"7:46: artifacts[4].capabilities: expected a list, got the string \"CAP_CHOWN\"",
				`8:58: artifacts[5].capabilities[1]: unknown capability "CAP_CHOWN=+ep" (one name an item, without setcap's =+ep`,
			},
		},
		{
			name: "go artifacts",
			recipe: `base: {oci: "oci:x:y"}
artifacts:
  - go:
      module: k8s.io/kubernetes
      version: v1.37.2
      packages: [cmd/kubelet]
      replace_staging: true
      tags: [selinux, notest]
      ldflags: ["-s", "-w", "-X k8s.io/component-base/version.gitVersion=v1.37.2"]
      toolchain: go1.26.8
    dest: /usr/local/bin/kubelet
    mode: "0755"
  - go: {module: go.etcd.io/etcd/etcdctl/v3, version: v3.6.17, packages: [go.etcd.io/etcd/etcdctl/v3, .]}
    dest: /usr/local/bin/
`,
			errs: []string{"13:103: artifacts[1].go.packages[1]: package . is listed twice (also packages[0])"},
		},
		{
			name: "go artifact",
			recipe: `base: {oci: "oci:x:y"}
artifacts:
  - go: {module: k8s.io/kubernetes, version: v1.37.2, packages: [cmd/kubelet, cmd/kube-proxy], replace_staging: true, tags: [selinux], ldflags: ["-s -w"]}
    dest: /usr/local/bin/
`,
			check: func(t *testing.T, r *Recipe) {
				g := r.Artifacts[0].Go
				if g == nil || g.Module != "k8s.io/kubernetes" || g.Version != "v1.37.2" || len(g.Packages) != 2 || !g.ReplaceStaging ||
					len(g.Tags) != 1 || len(g.LDFlags) != 1 || g.Toolchain != "" || r.Artifacts[0].Mode != 0o755 {
					t.Errorf("go artifact: %+v %+v", r.Artifacts[0], g)
				}
			},
		},
		{
			name: "bad go artifacts",
			recipe: `base: {oci: "oci:x:y"}
artifacts:
  - {go: {packages: []}, dest: /a}
  - {go: {module: example.com/m, version: "1.2", packages: [cmd/a]}, dest: /b}
  - {go: {module: example.com/m, version: v1.2.0, packages: [github.com/x/cmd/y, cmd/../../z]}, dest: /c/}
  - {go: {module: example.com/m, version: v1.2.0, packages: [cmd/a], flags: [x]}, dest: /d}
  - {go: {module: example.com/m, version: v1.2.0, packages: [cmd/a], ldflags: ["-X a=b\n-X c=d"]}, dest: /e}
  - {go: {module: example.com/m, version: v1.2.0, packages: [cmd/a, cmd/b]}, dest: /f}
  - {go: {module: example.com/m, version: v1.2.0, packages: [cmd/a]}, dest: /g, sha256: "` + digest + `"}
  - {go: {module: example.com/m, version: v2.0.0, packages: [cmd/a], toolchain: "1.26", replace_staging: true}, dest: /h}
  - {go: {module: example.com/m, version: v1.2.0, packages: [cmd/a]}, dest: /b}
  - {go: {module: example.com/m, version: v1.2.0, packages: [cmd/a]}}
`,
			errs: []string{
				"3:10: artifacts[0].go.module: required",
				"3:10: artifacts[0].go.version: required",
				"3:21: artifacts[0].go.packages: required",
				`4:43: artifacts[1].go.version: "1.2" is not a semantic version tag`,
				`5:62: artifacts[2].go.packages[0]: package "github.com/x/cmd/y" is outside module example.com/m`,
				`5:82: artifacts[2].go.packages[1]: package "cmd/../../z" is outside module example.com/m`,
				`6:70: artifacts[3].go.flags: unknown key "flags"`,
				`7:80: artifacts[4].go.ldflags[0]: "-X a=b\n-X c=d" holds a line break`,
				"8:84: artifacts[5].dest: several packages need a dest directory ending in /",
				"9:89: artifacts[6].sha256: sha256 does not apply to a go artifact",
				"10:106: artifacts[7].go.replace_staging: staging modules are published as v0.N.M for Kubernetes versions v1.N.M only",
				`10:81: artifacts[7].go.toolchain: "1.26" is not a Go release`,
				"11:77: artifacts[8].dest: duplicate dest /b (also artifacts[1])",
				"12:5: artifacts[9].dest: dest is required",
			},
		},
		{
			name: "bad inputs",
			recipe: `base:
  debian: {suite: "Tr!xie", variant: tiny, snapshot: yesterday, packages: ["bad pkg"]}
layers:
  - {oci: registry.k8s.io/pause:3.10}
  - {tar: x.tar, oci: "oci:a:b"}
artifacts:
  - {url: https://x.org/a, dest: /a}
  - {url: ftp://x.org/b, sha256: nothex, dest: /b}
  - {url: https://x.org/c, image: "oci:a:b", dest: /c}
  - {archive: https://x.org/d.tgz, sha256: "` + digest + `", extract: [a, b], dest: /d}
  - {image: "oci:a:b", dest: relative}
  - {file: missing.bin, dest: /e, path: /x}
`,
			errs: []string{
				"2:19: base.debian.suite: invalid suite name \"Tr!xie\"",
				"2:38: base.debian.variant: unknown variant \"tiny\"",
				"2:54: base.debian.snapshot: want YYYYMMDDTHHMMSSZ, got \"yesterday\"",
				"2:76: base.debian.packages[0]: invalid package \"bad pkg\"",
				"4:11: layers[0].oci: image reference \"registry.k8s.io/pause:3.10\" needs a transport",
				"5:5: layers[1]: set only one of tar or oci, not both",
				"7:5: artifacts[0].sha256: sha256 is required",
				"8:11: artifacts[1].url: \"ftp://x.org/b\" is not an http(s) URL",
				"8:34: artifacts[1].sha256: \"nothex\" is not a sha256 digest",
				"9:5: artifacts[2]: set only one of url, archive, image, file or go, not url and image",
				"10:128: artifacts[3].extract: several members need a dest directory ending in /",
				"11:30: artifacts[4].dest: path \"relative\" must be absolute",
				"11:5: artifacts[4].path: path is required",
				"12:12: artifacts[5].file: file missing.bin not found",
				"12:41: artifacts[5].path: path does not apply to a file artifact",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLab(t, dir, map[string]string{"lab.yaml": miniLab, "recipes/master.yaml": tc.recipe})
			lab, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			r, err := lab.Recipe("master")
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, r)
				return
			}
			var el ErrorList
			if !errors.As(err, &el) {
				t.Fatalf("err = %v, want an ErrorList", err)
			}
			lines := strings.Split(el.Error(), "\n")
			for _, want := range tc.errs {
				found := false
				for _, l := range lines {
					if strings.Contains(l, want) {
						found = true
					}
				}
				if !found {
					t.Errorf("no error line containing %q in:\n%s", want, el.Error())
				}
			}
			if len(lines) != len(tc.errs) {
				t.Errorf("%d error lines, want %d:\n%s", len(lines), len(tc.errs), el.Error())
			}
		})
	}
}

func TestChecks(t *testing.T) {
	dir := t.TempDir()
	writeLab(t, dir, map[string]string{"lab.yaml": miniLab, "recipes/master.yaml": `base: {oci: "oci:x:y"}
checks:
  units_active: [etcd.service, multi-user.target]
  files: [/etc/etcd/etcd.conf]
  commands:
    - {run: "etcdctl endpoint health", expect: "is healthy"}
    - {run: "true"}
`, "recipes/bad.yaml": `base: {oci: "oci:x:y"}
checks:
  units_active: [etcd]
  files: [relative]
  commands: [{expect: x}, {run: "", expect: y}]
  extra: 1
`})
	lab, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := lab.Recipe("master")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Checks
	if len(c.UnitsActive) != 2 || len(c.Files) != 1 || len(c.Commands) != 2 || c.Commands[0].Expect != "is healthy" || c.Empty() {
		t.Errorf("checks = %+v", c)
	}
	_, err = lab.Recipe("bad")
	for _, want := range []string{"checks.units_active[0]: unit name \"etcd\" has no unit type suffix", "checks.files[0]: path \"relative\" must be absolute", "checks.commands[0].run: run is required", "checks.commands[1].run: run must be one non-empty line", "checks.extra: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no error %q in:\n%v", want, err)
		}
	}
}

// The recipe checks base.debian with the Debian spec's own Validate: what
// one accepts the other does, and each problem is placed at its field.
func TestDebianValidate(t *testing.T) {
	dir := t.TempDir()
	writeLab(t, dir, map[string]string{
		"lab.yaml": miniLab,
		"recipes/master.yaml": `base:
  debian:
    suite: trixie
    mirror: mirror+file:///etc/apt/mirrors.txt
    packages: [linux-image-amd64, "systemd/trixie-backports"]
    extra:
      - trixie-updates
      - deb http://deb.debian.org/debian-security trixie-security main
`,
		"recipes/node.yaml": `base:
  debian:
    suite: trixie
    components: [main, "Non Free"]
    extra: [trixie-updates, "deb http://x", ""]
    mirror: gopher://x
`,
	})
	lab, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := lab.Recipe("master")
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Base.Debian.Spec().Validate(); err != nil {
		t.Errorf("the decoded spec does not validate: %v", err)
	}
	if got := rec.Base.Debian.Extra; len(got) != 2 || got[1] != "deb http://deb.debian.org/debian-security trixie-security main" {
		t.Errorf("Extra = %q", got)
	}
	_, err = lab.Recipe("node")
	want := `recipes/node.yaml:4:24: base.debian.components[1]: invalid component "Non Free"
recipes/node.yaml:5:29: base.debian.extra[1]: "deb http://x": want "deb URI SUITE [COMPONENT...]"
recipes/node.yaml:5:45: base.debian.extra[2]: empty
recipes/node.yaml:6:13: base.debian.mirror: "gopher://x": want an http, https, file or copy URL`
	if err == nil || err.Error() != want {
		t.Errorf("Recipe(node) = %v\nwant\n%s", err, want)
	}
}
