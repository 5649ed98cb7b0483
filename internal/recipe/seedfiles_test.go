package recipe

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// seedLab is a lab.yaml of three machines whose seed_files (from line 7)
// are entries.
func seedLab(entries string) string {
	return "name: t\nnodes:\n" +
		"  - {name: master, role: master, ip: 172.18.0.2}\n" +
		"  - {name: node-one, role: node, ip: 172.18.0.3}\n" +
		"  - {name: node-two, role: node, ip: 172.18.0.4}\n" +
		"seed_files:\n" + entries
}

func TestSeedFilesDecode(t *testing.T) {
	type want struct {
		path, file string
		mode       uint32
		machines   []string // the machines that get it
	}
	for _, tc := range []struct {
		name, entries string
		files         map[string]string // lab dir files; "->X" makes a symbolic link to X
		want          []want
		errs          []string // every problem, in order
	}{
		{name: "one role, default mode",
			entries: "  - {path: /etc/kubernetes/ceph/userKey, file: secrets/ceph.key, roles: [master]}\n",
			want:    []want{{"/etc/kubernetes/ceph/userKey", "secrets/ceph.key", 0o600, []string{"master"}}}},
		{name: "every machine, block style, file need not exist yet",
			entries: "  - path: /etc/app/token\n    file: secrets/token\n    mode: \"0440\"\n",
			want:    []want{{"/etc/app/token", "secrets/token", 0o440, []string{"master", "node-one", "node-two"}}}},
		{name: "roles and nodes add up",
			entries: "  - {path: /etc/app/a, file: a, roles: [master], nodes: [node-two, node-two]}\n",
			want:    []want{{"/etc/app/a", "a", 0o600, []string{"master", "node-two"}}}},
		{name: "one path on other machines, and a symbolic link inside the lab",
			files: map[string]string{"real/m.key": "m", "secrets/m.key": "->../real/m.key"},
			entries: "  - {path: /etc/app/key, file: secrets/m.key, roles: [master]}\n" +
				"  - {path: /etc/app/key, file: n.key, roles: [node], mode: \"4755\"}\n",
			want: []want{
				{"/etc/app/key", "secrets/m.key", 0o600, []string{"master"}},
				{"/etc/app/key", "n.key", 0o4755, []string{"node-one", "node-two"}},
			}},
		{name: "empty", entries: "  []\n"},
		{name: "not a list", entries: "  {path: /x, file: y}\n",
			errs: []string{"lab.yaml:7:3: seed_files: expected a list, got a mapping"}},
		{name: "null entry and unknown key",
			entries: "  - \n  - {path: /etc/a, file: a, owner: \"0:0\"}\n",
			errs: []string{
				"lab.yaml:7:4: seed_files[0]: expected a mapping, got null",
				`lab.yaml:8:29: seed_files[1].owner: unknown key "owner" (allowed: path, file, roles, nodes, mode)`,
			}},
		{name: "required keys",
			entries: "  - {roles: [master]}\n",
			errs: []string{
				"lab.yaml:7:5: seed_files[0].path: path is required: where the file goes in the machine",
				"lab.yaml:7:5: seed_files[0].file: file is required: the file of the lab dir the machines get",
			}},
		{name: "bad paths in the machine",
			entries: "  - {path: etc/a, file: a}\n" +
				"  - {path: /etc/../a, file: a}\n" +
				"  - {path: /etc/hostname, file: a}\n" +
				"  - {path: /etc/ssh/ssh_host_ed25519_key, file: a}\n" +
				"  - {path: 7, file: a}\n",
			errs: []string{
				`lab.yaml:7:12: seed_files[0].path: path "etc/a" must be absolute, like /etc/motd`,
				`lab.yaml:8:12: seed_files[1].path: path "/etc/../a" must not contain ..`,
				"lab.yaml:9:12: seed_files[2].path: /etc/hostname: managed by the seed's hostname",
				"lab.yaml:10:12: seed_files[3].path: /etc/ssh/ssh_host_ed25519_key: host keys are the seed's HostKeys",
				"lab.yaml:11:12: seed_files[4].path: expected a string, got the integer 7",
			}},
		{name: "files outside the lab dir",
			files: map[string]string{"secrets/out.key": "->/etc/hostname"},
			entries: "  - {path: /etc/a, file: /etc/passwd}\n" +
				"  - {path: /etc/b, file: ../x}\n" +
				"  - {path: /etc/c, file: secrets/out.key}\n" +
				"  - {path: /etc/d, file: \"\"}\n",
			errs: []string{
				"lab.yaml:7:26: seed_files[0].file: /etc/passwd is an absolute path (paths in a recipe are relative to the lab dir and stay inside it)",
				"lab.yaml:8:26: seed_files[1].file: ../x leads outside the lab dir (paths in a recipe are relative to the lab dir and stay inside it)",
				"lab.yaml:9:26: seed_files[2].file: secrets/out.key leads outside the lab dir through a symbolic link (paths in a recipe are relative to the lab dir and stay inside it)",
				"lab.yaml:10:26: seed_files[3].file: file path is empty",
			}},
		{name: "unknown roles and machines, empty lists",
			entries: "  - {path: /etc/a, file: a, roles: [master, worker]}\n" +
				"  - {path: /etc/b, file: a, nodes: [node-three]}\n" +
				"  - {path: /etc/c, file: a, roles: []}\n" +
				"  - {path: /etc/d, file: a, nodes: node-one}\n",
			errs: []string{
				`lab.yaml:7:45: seed_files[0].roles[1]: no role "worker" in the lab's nodes (roles: master, node)`,
				`lab.yaml:8:37: seed_files[1].nodes[0]: no machine "node-three" in the lab's nodes (nodes: master, node-one, node-two)`,
				"lab.yaml:9:36: seed_files[2].roles: an empty list selects no machine: leave roles out (with neither roles nor nodes, every machine gets the file)",
				`lab.yaml:10:36: seed_files[3].nodes: expected a list, got the string "node-one"`,
			}},
		{name: "modes",
			entries: "  - {path: /etc/a, file: a, mode: 0600}\n" +
				"  - {path: /etc/b, file: a, mode: \"0000\"}\n" +
				"  - {path: /etc/c, file: a, mode: \"0800\"}\n",
			errs: []string{
				`lab.yaml:7:35: seed_files[0].mode: mode must be a quoted octal string like "0600", got the integer 0600`,
				`lab.yaml:8:35: seed_files[1].mode: mode 0000 gives no permission: give at least the owner's, like "0400"`,
				`lab.yaml:9:35: seed_files[2].mode: mode must be a quoted octal string like "0600", got the string "0800"`,
			}},
		{name: "one path twice on a machine",
			entries: "  - {path: /etc/app/key, file: a, roles: [node]}\n" +
				"  - {path: /etc/app/key, file: b, roles: [master]}\n" +
				"  - {path: /etc/app/key, file: c, nodes: [node-two]}\n" +
				"  - {path: /etc/app/key, file: d}\n",
			errs: []string{
				"lab.yaml:9:12: seed_files[2].path: /etc/app/key is also the path of seed_files[0] (line 7) on machine node-two",
				"lab.yaml:10:12: seed_files[3].path: /etc/app/key is also the path of seed_files[1] (line 8) on machine master",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, c := range tc.files {
				if target, ok := strings.CutPrefix(c, "->"); ok {
					if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				mustWrite(t, filepath.Join(dir, p), c)
			}
			mustWrite(t, filepath.Join(dir, "lab.yaml"), seedLab(tc.entries))
			lab, err := Load(dir)
			if tc.errs != nil {
				var el ErrorList
				if !errors.As(err, &el) {
					t.Fatalf("Load: %v, want an ErrorList", err)
				}
				var got []string
				for _, e := range el {
					got = append(got, e.Error())
				}
				if !slices.Equal(got, tc.errs) {
					t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.errs, "\n"))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(lab.SeedFiles) != len(tc.want) {
				t.Fatalf("seed files %+v, want %+v", lab.SeedFiles, tc.want)
			}
			for i, w := range tc.want {
				f := lab.SeedFiles[i]
				if f.Path != w.path || f.File != w.file || f.Mode != w.mode {
					t.Errorf("seed_files[%d] = %+v, want %+v", i, f, w)
				}
				if f.Pos.File != "lab.yaml" || f.Pos.Line < 7 || f.PathPos.Line < f.Pos.Line || f.FilePos.Line < f.Pos.Line || f.FilePos == f.PathPos {
					t.Errorf("seed_files[%d] positions %+v %+v %+v", i, f.Pos, f.PathPos, f.FilePos)
				}
				var got []string
				for _, n := range lab.Nodes {
					if slices.ContainsFunc(lab.SeedFilesFor(n.Name), func(g SeedFile) bool { return g.Pos == f.Pos }) {
						got = append(got, n.Name)
					}
				}
				if !slices.Equal(got, w.machines) {
					t.Errorf("seed_files[%d] goes to %v, want %v", i, got, w.machines)
				}
			}
		})
	}
}

// TestReadSeedFiles: content as on disk, read for the machines asked for
// only; every problem at the entry's file: with what is wrong.
func TestReadSeedFiles(t *testing.T) {
	big := strings.Repeat("k", MaxSeedFile)
	for _, tc := range []struct {
		name, entries string
		files         map[string]string
		setup         func(t *testing.T, dir string) // after Load
		names         []string
		want          map[string][]string // machine: its files' contents
		errs          []string
	}{
		{name: "contents by machine",
			files: map[string]string{"secrets/ceph.key": "AQBk\n", "secrets/token": "t\x00\xff"},
			entries: "  - {path: /etc/kubernetes/ceph/userKey, file: secrets/ceph.key, roles: [master]}\n" +
				"  - {path: /etc/app/token, file: secrets/token}\n",
			want: map[string][]string{"master": {"AQBk\n", "t\x00\xff"}, "node-one": {"t\x00\xff"}, "node-two": {"t\x00\xff"}}},
		{name: "a missing file of a machine not asked for",
			files:   map[string]string{"a": "A"},
			entries: "  - {path: /etc/a, file: a, roles: [master]}\n  - {path: /etc/b, file: missing, roles: [node]}\n",
			names:   []string{"master"},
			want:    map[string][]string{"master": {"A"}}},
		{name: "exactly the bound",
			files:   map[string]string{"big": big},
			entries: "  - {path: /etc/big, file: big, nodes: [master]}\n",
			want:    map[string][]string{"master": {big}}},
		{name: "missing, a directory, a FIFO",
			files: map[string]string{"dir/x": "x"},
			setup: func(t *testing.T, dir string) {
				if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			entries: "  - {path: /etc/a, file: secrets/ceph.key, roles: [master]}\n" +
				"  - {path: /etc/b, file: dir, roles: [master]}\n" +
				"  - {path: /etc/c, file: fifo, roles: [master]}\n",
			errs: []string{
				"lab.yaml:7:26: seed_files[0].file: secrets/ceph.key not found (it is read when seeds are written)",
				"lab.yaml:8:26: seed_files[1].file: dir is a directory, not a regular file",
				"lab.yaml:9:26: seed_files[2].file: fifo is a special file, not a regular file",
			}},
		{name: "a symbolic link out made after loading",
			entries: "  - {path: /etc/a, file: secrets/ceph.key}\n",
			setup: func(t *testing.T, dir string) {
				os.MkdirAll(filepath.Join(dir, "secrets"), 0o755)
				if err := os.Symlink("/etc/hostname", filepath.Join(dir, "secrets/ceph.key")); err != nil {
					t.Fatal(err)
				}
			},
			errs: []string{"lab.yaml:7:26: seed_files[0].file: secrets/ceph.key leads outside the lab dir through a symbolic link (paths in a recipe are relative to the lab dir and stay inside it)"}},
		{name: "one byte too many",
			files:   map[string]string{"big": big + "!"},
			entries: "  - {path: /etc/big, file: big, nodes: [master]}\n",
			errs:    []string{"lab.yaml:7:28: seed_files[0].file: big is larger than 1MiB, the most a seed file may hold"}},
		{name: "too much for one machine",
			files: map[string]string{"1": big, "2": big, "3": big, "4": big, "5": "x"},
			entries: "  - {path: /etc/1, file: \"1\"}\n  - {path: /etc/2, file: \"2\"}\n  - {path: /etc/3, file: \"3\"}\n" +
				"  - {path: /etc/4, file: \"4\", nodes: [node-one]}\n  - {path: /etc/5, file: \"5\", nodes: [node-one, master]}\n",
			want: nil,
			errs: []string{"lab.yaml:11:26: seed_files[4].file: the seed files of node-one come to more than 4MiB with 5: a seed carries at most 4MiB of them"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, c := range tc.files {
				mustWrite(t, filepath.Join(dir, p), c)
			}
			mustWrite(t, filepath.Join(dir, "lab.yaml"), seedLab(tc.entries))
			lab, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			got, err := lab.ReadSeedFiles(tc.names)
			if tc.errs != nil {
				var el ErrorList
				if !errors.As(err, &el) {
					t.Fatalf("ReadSeedFiles: %v, want an ErrorList", err)
				}
				var msgs []string
				for _, e := range el {
					msgs = append(msgs, e.Error())
				}
				if !slices.Equal(msgs, tc.errs) {
					t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(tc.errs, "\n"))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Errorf("machines %d, want %d", len(got), len(tc.want))
			}
			for name, contents := range tc.want {
				if len(got[name]) != len(contents) {
					t.Errorf("%s: %d files, want %d", name, len(got[name]), len(contents))
					continue
				}
				for i, c := range contents {
					if !bytes.Equal(got[name][i].Content, []byte(c)) {
						t.Errorf("%s: file %d (%s) differs", name, i, got[name][i].File)
					}
				}
			}
		})
	}
}
