package tree

import (
	"strings"
	"testing"
)

func TestAddUnits(t *testing.T) {
	tests := []struct {
		name    string
		units   []Unit
		links   map[string]string // tree path -> symlink target
		absent  []string
		wantErr string
	}{
		{
			name: "wanted by multi-user",
			units: []Unit{{Name: "etcd.service", Enable: true, Content: []byte(
				"[Unit]\nDescription=etcd\n\n[Service]\nExecStart=/usr/bin/etcd\n\n[Install]\nWantedBy=multi-user.target\n")}},
			links: map[string]string{"etc/systemd/system/multi-user.target.wants/etcd.service": "/etc/systemd/system/etcd.service"},
		},
		{
			name:   "not enabled",
			units:  []Unit{{Name: "etcd.service", Content: []byte("[Install]\nWantedBy=multi-user.target\n")}},
			absent: []string{"etc/systemd/system/multi-user.target.wants"},
		},
		{
			name: "several values, lines, comments, continuation",
			units: []Unit{{Name: "kubelet.service", Enable: true, Content: []byte(
				"[Install]\n# comment\n; other comment\nWantedBy = multi-user.target  graphical.target\nWantedBy=kube.target \\\n  other.target\nRequiredBy=containerd.service\nAlso=kubelet.socket\nX-Custom=1\n")}},
			links: map[string]string{
				"etc/systemd/system/multi-user.target.wants/kubelet.service":     "/etc/systemd/system/kubelet.service",
				"etc/systemd/system/graphical.target.wants/kubelet.service":      "/etc/systemd/system/kubelet.service",
				"etc/systemd/system/kube.target.wants/kubelet.service":           "/etc/systemd/system/kubelet.service",
				"etc/systemd/system/other.target.wants/kubelet.service":          "/etc/systemd/system/kubelet.service",
				"etc/systemd/system/containerd.service.requires/kubelet.service": "/etc/systemd/system/kubelet.service",
			},
			absent: []string{"etc/systemd/system/kubelet.socket"},
		},
		{
			name:   "empty assignment resets",
			units:  []Unit{{Name: "a.service", Enable: true, Content: []byte("[Install]\nWantedBy=x.target\nWantedBy=\nWantedBy=y.target\n")}},
			links:  map[string]string{"etc/systemd/system/y.target.wants/a.service": "/etc/systemd/system/a.service"},
			absent: []string{"etc/systemd/system/x.target.wants"},
		},
		{
			name:  "alias",
			units: []Unit{{Name: "containerd.service", Enable: true, Content: []byte("[Install]\nWantedBy=multi-user.target\nAlias=cri.service\n")}},
			links: map[string]string{
				"etc/systemd/system/cri.service":                                "containerd.service",
				"etc/systemd/system/multi-user.target.wants/containerd.service": "/etc/systemd/system/containerd.service",
			},
		},
		{
			name:  "upheld by",
			units: []Unit{{Name: "a.service", Enable: true, Content: []byte("[Install]\nUpheldBy=b.target\n")}},
			links: map[string]string{"etc/systemd/system/b.target.upholds/a.service": "/etc/systemd/system/a.service"},
		},
		{
			name:  "template with DefaultInstance",
			units: []Unit{{Name: "qemu@.service", Enable: true, Content: []byte("[Install]\nWantedBy=default.target\nDefaultInstance=master\n")}},
			links: map[string]string{"etc/systemd/system/default.target.wants/qemu@master.service": "/etc/systemd/system/qemu@.service"},
		},
		{
			name:    "template without DefaultInstance",
			units:   []Unit{{Name: "qemu@.service", Enable: true, Content: []byte("[Install]\nWantedBy=default.target\n")}},
			wantErr: `unit "qemu@.service": template unit needs DefaultInstance= to be enabled`,
		},
		{
			name:    "no [Install]",
			units:   []Unit{{Name: "oneshot.service", Enable: true, Content: []byte("[Service]\nType=oneshot\n")}},
			wantErr: `unit "oneshot.service": enable: true but the unit has no [Install] section`,
		},
		{
			name:    "empty [Install]",
			units:   []Unit{{Name: "a.service", Enable: true, Content: []byte("[Install]\nAlso=b.service\n")}},
			wantErr: `unit "a.service": enable: true but the [Install] section has no WantedBy=`,
		},
		{
			name:    "unknown key",
			units:   []Unit{{Name: "a.service", Enable: true, Content: []byte("[Install]\nWantBy=x.target\n")}},
			wantErr: `unknown key "WantBy"`,
		},
		{
			name:    "bad name",
			units:   []Unit{{Name: "../evil.service", Content: []byte("")}},
			wantErr: `unit "../evil.service": invalid unit name`,
		},
		{
			name:    "no suffix",
			units:   []Unit{{Name: "etcd", Content: []byte("")}},
			wantErr: "has no unit type suffix",
		},
		{
			name:    "bad target",
			units:   []Unit{{Name: "a.service", Enable: true, Content: []byte("[Install]\nWantedBy=../../x\n")}},
			wantErr: "invalid unit name",
		},
		{
			name:    "alias of another type",
			units:   []Unit{{Name: "a.service", Enable: true, Content: []byte("[Install]\nAlias=a.socket\n")}},
			wantErr: "not the same unit type",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			blobDir := t.TempDir()
			tr := New(testEpoch)
			err := tr.AddUnits(tc.units, blobDir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, tr, blobDir)
			for _, u := range tc.units {
				e := mustGet(t, tr, "etc/systemd/system/"+u.Name)
				if e.Type != Regular || e.Mode != 0o644 || e.UID != 0 || !e.ModTime.Equal(testEpoch) || !e.Content.Owned {
					t.Errorf("unit file = %+v", e)
				}
				if got := content(t, tr, e.Path); got != string(u.Content) {
					t.Errorf("unit content = %q", got)
				}
			}
			for p, target := range tc.links {
				e := mustGet(t, tr, p)
				if e.Type != Symlink || e.Linkname != target {
					t.Errorf("%s = %s -> %q, want symlink -> %q", p, e.Type, e.Linkname, target)
				}
			}
			for _, p := range tc.absent {
				if _, ok := tr.Get(p); ok {
					t.Errorf("%s exists", p)
				}
			}
		})
	}
}

func TestAddFiles(t *testing.T) {
	blobDir := t.TempDir()
	tr := New(testEpoch)
	err := tr.AddFiles([]File{
		{Path: "/etc/hostname", Content: []byte("master\n")},
		{Path: "etc/secret", Content: []byte("s"), Mode: 0o600, UID: 1, GID: 2},
		{Path: "etc/empty", Content: nil},
		{Path: "etc/link", Symlink: "/etc/hostname"},
	}, blobDir)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, tr, blobDir)
	if e := mustGet(t, tr, "etc/hostname"); e.Mode != 0o644 || !e.ModTime.Equal(testEpoch) || content(t, tr, e.Path) != "master\n" {
		t.Errorf("etc/hostname = %+v", e)
	}
	if e := mustGet(t, tr, "etc/secret"); e.Mode != 0o600 || e.UID != 1 || e.GID != 2 {
		t.Errorf("etc/secret = %+v", e)
	}
	if e := mustGet(t, tr, "etc/empty"); e.Type != Regular || e.Content.Size != 0 {
		t.Errorf("etc/empty = %+v", e)
	}
	if e := mustGet(t, tr, "etc/link"); e.Type != Symlink || e.Linkname != "/etc/hostname" || e.Mode != 0o777 {
		t.Errorf("etc/link = %+v", e)
	}
	for _, tc := range []struct {
		f       File
		wantErr string
	}{
		{File{Path: "../x", Content: []byte("x")}, `file "../x": leaves the root`},
		{File{Path: "", Content: []byte("x")}, `file "": empty name`},
		{File{Path: "x", Content: []byte("x"), Symlink: "y"}, "both content and symlink"},
		{File{Path: "x", Content: []byte("x"), UID: -1}, "negative owner"},
	} {
		if err := tr.AddFiles([]File{tc.f}, blobDir); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v: err = %v, want %q", tc.f, err, tc.wantErr)
		}
	}
	checkInvariants(t, tr, blobDir)
}

func TestCheckUnitName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // substring of the error; "" for none
	}{
		{"etcd.service", ""},
		{"getty@.service", ""},
		{"getty@ttyS0.service", ""},
		{"dev-disk-by\\x2dlabel-root.device", ""},
		{"var-lib.mount", ""},
		{"k8s:x_y.timer", ""},
		{"", "empty unit name"},
		{"etcd", "has no unit type suffix"},
		{"etcd.conf", "has no unit type suffix"},
		{".service", "invalid unit name"},
		{"@x.service", "invalid unit name"},
		{"a@b@c.service", "invalid unit name"},
		{"../evil.service", `'/' is not one of`},
		{"my unit.service", `' ' is not one of`},
		{"é.service", `'é' is not one of`},
		{"a\x00.service", `'\x00' is not one of`},
		{strings.Repeat("a", 248) + ".service", "longer than 255 bytes"},
		{strings.Repeat("a", 247) + ".service", ""},
	} {
		err := CheckUnitName(tc.name)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckUnitName(%q) = %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckUnitName(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
}
