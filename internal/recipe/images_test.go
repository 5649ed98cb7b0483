package recipe

import (
	"reflect"
	"strings"
	"testing"
)

func TestImages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		common  string // recipes/common.yaml after its base
		master  string // recipes/master.yaml after extends: common
		want    []Image
		ctrd    Containerd
		wantErr []string
	}{
		{
			name:   "merged, child appends, names normalized",
			common: "images:\n  - {ref: registry.k8s.io/pause:3.10.2, pinned: true}\ncontainerd: {root: /srv/containerd}\n",
			master: "images:\n  - ref: docker://registry.k8s.io/coredns/coredns:v1.14.6\n  - ref: busybox\n  - ref: quay.io/a/b:1@sha256:" + strings.Repeat("ab", 32) + "\ncontainerd: {namespace: lab}\n",
			want: []Image{
				{Name: "registry.k8s.io/pause:3.10.2", Ref: "docker://registry.k8s.io/pause:3.10.2", Pinned: true, Pos: Pos{File: "recipes/common.yaml", Line: 3, Col: 5}},
				{Name: "registry.k8s.io/coredns/coredns:v1.14.6", Ref: "docker://registry.k8s.io/coredns/coredns:v1.14.6", Pos: Pos{File: "recipes/master.yaml", Line: 3, Col: 5}},
				{Name: "docker.io/library/busybox:latest", Ref: "docker://docker.io/library/busybox:latest", Pos: Pos{File: "recipes/master.yaml", Line: 4, Col: 5}},
				{Name: "quay.io/a/b@sha256:" + strings.Repeat("ab", 32), Ref: "docker://quay.io/a/b@sha256:" + strings.Repeat("ab", 32), Pos: Pos{File: "recipes/master.yaml", Line: 5, Col: 5}},
			},
			ctrd: Containerd{Namespace: "lab", Root: "/srv/containerd"},
		},
		{
			name: "defaults",
			ctrd: Containerd{Namespace: "k8s.io", Root: "/var/lib/containerd"},
		},
		{
			name:    "same image twice across extends",
			common:  "images: [{ref: registry.k8s.io/pause:3.10.2}]\n",
			master:  "images: [{ref: 'docker://registry.k8s.io/pause:3.10.2'}]\n",
			wantErr: []string{"recipes/master.yaml:2:16: images[1].ref: duplicate image registry.k8s.io/pause:3.10.2 (also images[0])"},
		},
		{
			name:   "bad entries",
			master: "images:\n  - {ref: 'oci:dir:tag'}\n  - {ref: 'UPPER/case:1'}\n  - {pinned: true}\n  - {ref: a, pinned: yes please}\n  - {ref: b, tag: x}\n  - null\ncontainerd: {namespace: 'a/b', root: relative}\n",
			wantErr: []string{
				"recipes/master.yaml:3:11: images[0].ref: images are preloaded under a registry name",
				"recipes/master.yaml:4:11: images[1].ref: image reference \"UPPER/case:1\"",
				"recipes/master.yaml:5:5: images[2].ref: ref is required",
				"recipes/master.yaml:6:22: images[3].pinned: expected a boolean",
				"recipes/master.yaml:7:14: images[4].tag: unknown key \"tag\"",
				"recipes/master.yaml:8:5: images[5]: expected a mapping, got null",
				"recipes/master.yaml:9:25: containerd.namespace: \"a/b\" is not a containerd namespace",
				"recipes/master.yaml:9:38: containerd.root: \"relative\": want a clean absolute path",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLab(t, dir, map[string]string{
				"lab.yaml":            miniLab,
				"rootfs.tar":          "x",
				"recipes/common.yaml": "base: {tar: rootfs.tar}\n" + tc.common,
				"recipes/master.yaml": "extends: common\n" + tc.master,
			})
			lab, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			r, err := lab.Recipe("master")
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Images) != len(tc.want) {
				t.Fatalf("Images = %+v, want %+v", r.Images, tc.want)
			}
			for i := range tc.want {
				if r.Images[i] != tc.want[i] {
					t.Errorf("Images[%d] = %+v, want %+v", i, r.Images[i], tc.want[i])
				}
			}
			if r.Containerd.Namespace != tc.ctrd.Namespace || r.Containerd.Root != tc.ctrd.Root {
				t.Errorf("Containerd = %+v, want %+v", r.Containerd, tc.ctrd)
			}
		})
	}
}

// images[].build: files decoded like artifacts, the config fields, and
// every mistake placed at its field.
func TestImageBuild(t *testing.T) {
	for _, tc := range []struct {
		name    string
		images  string // recipes/master.yaml after its base
		want    *ImageBuild
		wantErr []string
	}{
		{
			name: "every field",
			images: `images:
  - ref: registry.k8s.io/pause:3.10.2
    pinned: true
    build:
      files:
        - {file: bin/pause, dest: /pause, capabilities: [net_bind_service]}
        - {go: {module: labbake.test/hello, version: v1.2.3, packages: [cmd/hello]}, dest: /hello, mode: "0750", owner: "65532:65532"}
        - {url: "https://example.test/c.tar.gz", sha256: "` + strings.Repeat("ab", 32) + `", dest: /etc/c}
      entrypoint: [/pause]
      cmd: ["-v"]
      user: "65535"
      env: ["PATH=/"]
      workdir: /tmp
      ports: ["53/udp", "9153"]
      labels: {org.example/role: sandbox}
`,
			want: &ImageBuild{
				Files: []Artifact{
					{Dest: "/pause", Mode: 0o755, File: "bin/pause", Capabilities: []string{"CAP_NET_BIND_SERVICE"}, Pos: Pos{File: "recipes/master.yaml", Line: 7, Col: 11}},
					{Dest: "/hello", Mode: 0o750, UID: 65532, GID: 65532, Pos: Pos{File: "recipes/master.yaml", Line: 8, Col: 11}},
					{Dest: "/etc/c", Mode: 0o755, URL: "https://example.test/c.tar.gz", SHA256: "sha256:" + strings.Repeat("ab", 32), Pos: Pos{File: "recipes/master.yaml", Line: 9, Col: 11}},
				},
				Entrypoint: []string{"/pause"}, Cmd: []string{"-v"}, User: "65535", Env: []string{"PATH=/"}, WorkingDir: "/tmp",
				ExposedPorts: []string{"53/udp", "9153"}, Labels: map[string]string{"org.example/role": "sandbox"},
				Pos: Pos{File: "recipes/master.yaml", Line: 6, Col: 7},
			},
		},
		{
			name: "mistakes",
			images: `images:
  - ref: registry.k8s.io/pause@sha256:` + strings.Repeat("ab", 32) + `
    build: {files: [{file: bin/pause, dest: /pause}], entrypoint: [/pause]}
  - ref: a:1
    build: {files: [], entrypoint: [/a]}
  - ref: b:1
    build: {files: [{file: bin/pause, dest: pause}, {dest: /x}, {file: bin/pause, dest: /x, sha256: abc}], entrypoint: []}
  - ref: c:1
    build: {files: [{file: bin/pause, dest: /c}], env: [NOEQUALS], workdir: tmp, ports: [53/icmp], user: "a b", labels: {k: [1]}, tag: x}
  - ref: d:1
    build: {files: [{file: bin/pause, dest: /d}, {file: bin/pause, dest: /d}]}
`,
			wantErr: []string{
				"recipes/master.yaml:3:10: images[0].ref: a built image is named by a tag (REPO:TAG), not a digest",
				"recipes/master.yaml:6:13: images[1].build.files: files lists nothing",
				`recipes/master.yaml:8:45: images[2].build.files[0].dest: path "pause" must be absolute`,
				"recipes/master.yaml:8:53: images[2].build.files[1]: set one of url, archive, image, file or go",
				"recipes/master.yaml:8:89: images[2].build.files[2].dest: duplicate dest /x (also images[2].build.files[1])",
				"recipes/master.yaml:8:101: images[2].build.files[2].sha256: sha256 does not apply to a file artifact",
				"recipes/master.yaml:8:120: images[2].build.entrypoint: entrypoint is empty",
				"recipes/master.yaml:10:12: images[3].build.entrypoint: entrypoint is required",
				`recipes/master.yaml:10:57: images[3].build.env[0]: "NOEQUALS": want KEY=VALUE`,
				`recipes/master.yaml:10:77: images[3].build.workdir: "tmp": want a clean absolute path`,
				`recipes/master.yaml:10:90: images[3].build.ports[0]: "53/icmp": the protocol is tcp, udp or sctp`,
				`recipes/master.yaml:10:106: images[3].build.user: user "a b"`,
				"recipes/master.yaml:10:125: images[3].build.labels.k: expected a string",
				`recipes/master.yaml:10:131: images[3].build.tag: unknown key "tag"`,
				"recipes/master.yaml:12:12: images[4].build.entrypoint: entrypoint is required",
				"recipes/master.yaml:12:74: images[4].build.files[1].dest: duplicate dest /d (also images[4].build.files[0])",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLab(t, dir, map[string]string{
				"lab.yaml":            miniLab,
				"rootfs.tar":          "x",
				"bin/pause":           "pause",
				"recipes/master.yaml": "base: {tar: rootfs.tar}\n" + tc.images,
			})
			lab, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			r, err := lab.Recipe("master")
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.wantErr) {
					t.Errorf("%d errors, want %d:\n%v", n, len(tc.wantErr), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Images) != 1 || r.Images[0].Name != "registry.k8s.io/pause:3.10.2" || !r.Images[0].Pinned {
				t.Fatalf("Images = %+v", r.Images)
			}
			got := r.Images[0].Build
			if got == nil {
				t.Fatal("no build")
			}
			for i := range got.Files {
				if got.Files[i].File != "" {
					got.Files[i].File = strings.TrimPrefix(got.Files[i].File, dir+"/")
				}
				if got.Files[i].Go != nil {
					if got.Files[i].Go.Module != "labbake.test/hello" {
						t.Errorf("files[%d].go = %+v", i, got.Files[i].Go)
					}
					got.Files[i].Go = nil
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Build =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}
