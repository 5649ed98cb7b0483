package kit

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/golden"
)

// writeKit renders lab into dir and returns the files.
func writeKit(t *testing.T, lab Lab, dir string) map[string][]byte {
	t.Helper()
	files, err := Render(lab)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, FileMode(name)); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// need skips the test unless the program is installed, or fails it when
// LABBAKE_REQUIRE_TOOLS is set (as in CI): systemd-analyze, nft and
// dnsmasq checking the kit must not be skipped there unnoticed.
func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, prog)); serr == nil {
				return filepath.Join(dir, prog)
			}
		}
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is not installed (LABBAKE_REQUIRE_TOOLS is set)", prog)
		}
		t.Skipf("%s is not installed", prog)
	}
	return p
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, env []string, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = env
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), e.String()
}

func TestRenderGolden(t *testing.T) {
	for _, mode := range []string{ModeBridge, ModeUser} {
		t.Run(mode, func(t *testing.T) {
			files, err := Render(goldenLab(mode))
			if err != nil {
				t.Fatal(err)
			}
			again, err := Render(goldenLab(mode))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.EqualFunc(files, again, bytes.Equal) {
				t.Error("two renders of the same lab differ")
			}
			names := slices.Sorted(maps.Keys(files))
			want := []string{"README", "qemu@.service", "run-qemu", "ssh_config", "vm/master.env", "vm/node-one.env", "vm/node-two.env"}
			if mode == ModeBridge {
				want = append(want, "bridge.conf", "dnsmasq.conf", "labbake-dnsmasq.service", "labbake-nat.service",
					"labbake-networkd.conf", "nftables.nft", "qemu0.netdev", "qemu0.network")
			}
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Errorf("files %q, want %q", names, want)
			}
			for _, name := range names {
				golden.Check(t, filepath.Join("testdata", filepath.Join(mode, name)), files[name])
			}
			if !golden.Update() {
				// No golden file left over from a file the kit no longer has.
				var stale []string
				filepath.WalkDir(filepath.Join("testdata", mode), func(p string, d os.DirEntry, err error) error {
					if err == nil && !d.IsDir() {
						rel, _ := filepath.Rel(filepath.Join("testdata", mode), p)
						if _, ok := files[filepath.ToSlash(rel)]; !ok {
							stale = append(stale, rel)
						}
					}
					return nil
				})
				if len(stale) > 0 {
					t.Errorf("golden files of no kit file: %q", stale)
				}
			}
		})
	}
}

// TestSystemdVerify has systemd-analyze check the units, with every
// program they run in place (the launcher under a home directory made for
// the test); qemu@.service as a user unit.
func TestSystemdVerify(t *testing.T) {
	sa := need(t, "systemd-analyze")
	need(t, "dnsmasq")
	need(t, "nft")
	files := writeKit(t, goldenLab(ModeBridge), t.TempDir())
	units := t.TempDir()
	// A template is verified through one of its instances.
	for dst, src := range map[string]string{
		"qemu@master.service":     "qemu@.service",
		"labbake-nat.service":     "labbake-nat.service",
		"labbake-dnsmasq.service": "labbake-dnsmasq.service",
	} {
		if err := os.WriteFile(filepath.Join(units, dst), files[src], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runtime := t.TempDir()
	// verify exits 0 on some findings too: it must say nothing.
	verify := func(home, unit string) (string, error) {
		args := []string{"verify", "--man=no", filepath.Join(units, unit)}
		if strings.HasPrefix(unit, "qemu@") {
			args = append([]string{"--user"}, args...)
		}
		cmd := exec.Command(sa, args...)
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_RUNTIME_DIR="+runtime)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	home := t.TempDir()
	kitDir := filepath.Join(home, filepath.FromSlash(KitDir))
	// Without the launcher installed, the check must fail.
	if out, err := verify(home, "qemu@master.service"); err == nil && !strings.Contains(out, "run-qemu") {
		t.Fatalf("systemd-analyze verify found nothing wrong with qemu@.service without its launcher: %v %s", err, out)
	}
	writeKit(t, goldenLab(ModeBridge), kitDir)
	for _, unit := range []string{"qemu@master.service", "labbake-nat.service", "labbake-dnsmasq.service"} {
		if out, err := verify(home, unit); err != nil || out != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// TestNftables has nft check the rules (nft -c, in a network namespace of
// its own, so nothing can touch the host's rules), then load them there
// for real and read them back.
func TestNftables(t *testing.T) {
	nft := need(t, "nft")
	unshare := need(t, "unshare")
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	dir := t.TempDir()
	writeKit(t, goldenLab(ModeBridge), dir)
	rules := filepath.Join(dir, "nftables.nft")
	run(t, nil, unshare, "-n", nft, "-c", "-f", rules)
	// Loading twice must work (the file replaces its table) and list the
	// rules as written.
	out, _ := run(t, nil, unshare, "-n", "sh", "-ec", `"$0" -f "$1"; "$0" -f "$1"; "$0" list table inet labbake`, nft, rules)
	for _, want := range []string{
		`iifname "qemu0" accept`,
		`oifname "qemu0" drop`,
		`ct state established,related accept`,
		`ip saddr 172.18.0.0/16 oifname != "qemu0" masquerade`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list table inet labbake lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "masquerade") != 1 {
		t.Errorf("loading twice doubled the rules:\n%s", out)
	}
}

func TestSSHConfig(t *testing.T) {
	ssh := need(t, "ssh")
	for _, tc := range []struct {
		mode, host string
		want       []string
	}{
		{ModeBridge, "node-one", []string{"hostname 172.18.100.122", "port 22", "user root", "hostkeyalias node-one", "stricthostkeychecking true",
			"identityfile /srv/labbake/mylab/pki/id_ed25519", "userknownhostsfile /srv/labbake/mylab/pki/known_hosts", "identitiesonly yes"}},
		{ModeUser, "node-two", []string{"hostname 127.0.0.1", "port 2203", "user root", "hostkeyalias node-two"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			writeKit(t, goldenLab(tc.mode), dir)
			out, _ := run(t, nil, ssh, "-G", "-F", filepath.Join(dir, "ssh_config"), tc.host)
			lines := strings.Split(out, "\n")
			for _, w := range tc.want {
				if !slices.Contains(lines, w) {
					t.Errorf("ssh -G %s lacks %q:\n%s", tc.host, w, out)
				}
			}
		})
	}
}
