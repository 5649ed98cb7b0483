package recipe

import (
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
