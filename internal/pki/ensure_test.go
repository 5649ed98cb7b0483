package pki

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func changeFiles(p *PKI) []string {
	var out []string
	for _, c := range p.Changes() {
		out = append(out, c.File)
	}
	return out
}

// pairFiles is the .crt and .key of each base name, sorted.
func pairFiles(bases ...string) []string {
	var out []string
	for _, b := range bases {
		out = append(out, b+".crt", b+".key")
	}
	slices.Sort(out)
	return out
}

func TestEnsureTwiceChangesNothing(t *testing.T) {
	dir, p := newLab(t, testSpec())
	if len(p.Changes()) == 0 {
		t.Fatal("a new lab reports no changes")
	}
	before := snapshot(t, dir)

	// Modes: the directory tree 0700, private keys 0600, the rest 0644.
	for name, st := range before {
		var want fs.FileMode
		switch {
		case st.data == nil:
			want = fs.ModeDir | 0o700
		case strings.HasSuffix(name, ".key") || strings.HasSuffix(name, "_key") || name == "ssh/id_ed25519":
			want = 0o600
		default:
			want = 0o644
		}
		if st.mode != want {
			t.Errorf("%s: mode %v, want %v", name, st.mode, want)
		}
	}

	// Later, as the next build would.
	spec := testSpec()
	spec.Now = now.Add(36 * time.Hour)
	time.Sleep(10 * time.Millisecond) // a rewrite would show in the mtimes
	var logged bytes.Buffer
	p2, err := Ensure(dir, spec, WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if c := p2.Changes(); len(c) != 0 {
		t.Errorf("second Ensure changed %v", c)
	}
	if logged.Len() != 0 {
		t.Errorf("second Ensure logged:\n%s", logged.String())
	}
	if d := changed(before, snapshot(t, dir)); len(d) != 0 {
		t.Errorf("second Ensure touched %v", d)
	}
	// What it hands out is what the first one did.
	for _, m := range spec.Machines {
		a, err := p.MachineFiles(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := p2.MachineFiles(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(a, b, func(x, y File) bool { return x.Path == y.Path && x.Mode == y.Mode && bytes.Equal(x.Content, y.Content) }) {
			t.Errorf("%s: MachineFiles differ after reloading", m.Name)
		}
		ap, apub := p.HostKey(m.Name)
		bp, bpub := p2.HostKey(m.Name)
		if ap != bp || apub != bpub {
			t.Errorf("%s: host key differs after reloading", m.Name)
		}
	}
	if !bytes.Equal(p.KnownHosts(), p2.KnownHosts()) {
		t.Error("known_hosts differs after reloading")
	}
}

func TestEnsureOpenedUpKeyIsClosedAgain(t *testing.T) {
	dir, _ := newLab(t, testSpec())
	key := filepath.Join(dir, "apiserver.key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(key)
	if _, err := Ensure(dir, testSpec()); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(key)
	if after.Mode().Perm() != 0o600 || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("apiserver.key: mode %v mtime changed %t, want 0600 and the same file", after.Mode(), !after.ModTime().Equal(before.ModTime()))
	}
}

func TestEnsureNewMachine(t *testing.T) {
	for _, tc := range []struct {
		name    string
		machine Machine
		want    []string
	}{
		{"node", Machine{Name: "node3", IP: netip.MustParseAddr("172.18.0.13")},
			append(pairFiles("machines/node3/kubelet", "machines/node3/kubelet-client"),
				"machines/node3", "machines/node3/ssh_host_ed25519_key", "machines/node3/ssh_host_ed25519_key.pub")},
		// A second control plane is a SAN of the API server.
		{"control plane", Machine{Name: "master2", IP: netip.MustParseAddr("172.18.0.20"), ControlPlane: true},
			append(pairFiles("apiserver", "machines/master2/etcd-peer", "machines/master2/etcd-server", "machines/master2/kubelet", "machines/master2/kubelet-client"),
				"machines/master2", "machines/master2/ssh_host_ed25519_key", "machines/master2/ssh_host_ed25519_key.pub")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := newLab(t, testSpec())
			before := snapshot(t, dir)
			spec := testSpec()
			spec.Machines = append(spec.Machines, tc.machine)
			p, err := Ensure(dir, spec)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(tc.want)
			if got := changed(before, snapshot(t, dir)); !slices.Equal(got, tc.want) {
				t.Errorf("changed files:\n got %v\nwant %v", got, tc.want)
			}
			// Changes name each certificate or key pair once.
			for _, f := range changeFiles(p) {
				if !slices.Contains(tc.want, f) {
					t.Errorf("Changes reports %s", f)
				}
			}
			if _, pub := p.HostKey(tc.machine.Name); pub == "" {
				t.Error("the new machine has no host key")
			}
		})
	}
}

func TestEnsureIPChange(t *testing.T) {
	for _, tc := range []struct {
		machine string
		ip      string
		want    []string
	}{
		{"node1", "172.18.0.21", pairFiles("machines/node1/kubelet")},
		{"master", "172.18.0.20", pairFiles("apiserver", "machines/master/kubelet", "machines/master/etcd-server", "machines/master/etcd-peer")},
	} {
		t.Run(tc.machine, func(t *testing.T) {
			dir, _ := newLab(t, testSpec())
			before := snapshot(t, dir)
			spec := testSpec()
			for i := range spec.Machines {
				if spec.Machines[i].Name == tc.machine {
					spec.Machines[i].IP = netip.MustParseAddr(tc.ip)
				}
			}
			var logged bytes.Buffer
			p, err := Ensure(dir, spec, WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
			if err != nil {
				t.Fatal(err)
			}
			if got := changed(before, snapshot(t, dir)); !slices.Equal(got, tc.want) {
				t.Errorf("changed files:\n got %v\nwant %v", got, tc.want)
			}
			for _, c := range p.Changes() {
				if c.Action != "re-issued" || !strings.Contains(c.Reason, "SANs") || !strings.Contains(c.Reason, tc.ip) {
					t.Errorf("change %q: want re-issued for SANs naming %s", c, tc.ip)
				}
				if !strings.Contains(logged.String(), c.File) {
					t.Errorf("%s is not in the log:\n%s", c.File, logged.String())
				}
			}
			// Re-issued by the same CA, with the new address.
			ca := readCert(t, filepath.Join(dir, "ca.crt"))
			c := readCert(t, filepath.Join(dir, "machines", tc.machine, "kubelet.crt"))
			if err := c.CheckSignatureFrom(ca); err != nil {
				t.Error(err)
			}
			if sans := certSANs(c); !slices.Contains(sans, tc.ip) {
				t.Errorf("kubelet SANs %v lack %s", sans, tc.ip)
			}
			if !strings.Contains(string(p.KnownHosts()), tc.machine+","+tc.ip+" ") {
				t.Errorf("known_hosts lacks the new address:\n%s", p.KnownHosts())
			}
		})
	}
}

func TestRenew(t *testing.T) {
	dir, _ := newLab(t, testSpec())
	before := snapshot(t, dir)
	spec := testSpec()
	spec.Now = now.AddDate(0, 11, 0)
	p, err := Renew(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range leafTable {
		want = append(want, pairFiles(strings.TrimSuffix(l.file, ".crt"))...)
	}
	slices.Sort(want)
	if got := changed(before, snapshot(t, dir)); !slices.Equal(got, want) {
		t.Errorf("Renew changed:\n got %v\nwant every leaf %v", got, want)
	}
	if len(p.Changes()) != len(leafTable) {
		t.Errorf("Renew reports %d changes, want %d", len(p.Changes()), len(leafTable))
	}
	for _, l := range leafTable {
		c := readCert(t, filepath.Join(dir, l.file))
		if err := c.CheckSignatureFrom(readCert(t, filepath.Join(dir, l.ca))); err != nil {
			t.Errorf("%s: %v", l.file, err)
		}
		if start := spec.Now.Add(-backdate); !c.NotBefore.Equal(start) || !c.NotAfter.Equal(start.AddDate(1, 0, 0)) {
			t.Errorf("%s: valid %v to %v after renewal at %v", l.file, c.NotBefore, c.NotAfter, spec.Now)
		}
	}
	// Then Ensure is content.
	after := snapshot(t, dir)
	if _, err := Ensure(dir, spec); err != nil {
		t.Fatal(err)
	}
	if d := changed(after, snapshot(t, dir)); len(d) != 0 {
		t.Errorf("Ensure after Renew changed %v", d)
	}
}

func TestRenewNeedsALab(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	_, err := Renew(dir, testSpec())
	if err == nil || !strings.Contains(err.Error(), "no lab PKI to renew") {
		t.Fatalf("Renew of nothing: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Renew made %s", dir)
	}
}

// A process holding the PKI directory's lock (another labbake, or one
// stuck) keeps Ensure and Renew waiting only until their context ends:
// Ctrl-C stops the wait at once, with the context's error, and nothing is
// written (issue 9, item 12: a blocking flock could not be interrupted).
func TestLockWaitInterrupted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	holder, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := unix.Flock(int(holder.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func(string, Spec, ...Option) (*PKI, error){"Ensure": Ensure, "Renew": Renew} {
		var logged bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		_, err := call(dir, testSpec(), WithContext(ctx), WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
		took := time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with the lock held: %v, want the context's error", name, err)
		}
		if took > 2*time.Second {
			t.Errorf("%s took %v after its context ended", name, took)
		}
		if !strings.Contains(logged.String(), "waiting for another labbake") {
			t.Errorf("%s logged %q, want a line saying it waits", name, logged.String())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s wrote %d entries while the lock was held", name, len(entries))
		}
	}
	// Once the lock is free, Ensure proceeds.
	if err := unix.Flock(int(holder.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, testSpec(), WithContext(context.Background())); err != nil {
		t.Fatal(err)
	}
}

// TestEnsureConcurrent has several builds make one new lab at once: one
// makes it, the others find it made.
func TestEnsureConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	const n = 4
	results := make(chan *PKI, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			p, err := Ensure(dir, testSpec())
			errs <- err
			results <- p
		}()
	}
	makers := 0
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if len((<-results).Changes()) > 0 {
			makers++
		}
	}
	if makers != 1 {
		t.Errorf("%d of %d concurrent Ensures made the lab, want 1", makers, n)
	}
	before := snapshot(t, dir)
	if _, err := Ensure(dir, testSpec()); err != nil {
		t.Fatal(err)
	}
	if d := changed(before, snapshot(t, dir)); len(d) != 0 {
		t.Errorf("Ensure after the concurrent ones changed %v", d)
	}
}

func TestLeafNeverOutlivesItsCA(t *testing.T) {
	dir, _ := newLab(t, testSpec())
	spec := testSpec()
	spec.Now = now.AddDate(9, 6, 0)
	if _, err := Renew(dir, spec); err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	c := readCert(t, filepath.Join(dir, "admin.crt"))
	if !c.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("admin.crt ends %v, its CA %v", c.NotAfter, ca.NotAfter)
	}
}

// TestDamage breaks a lab in each way Ensure must refuse to repair: the
// error names the file and the fix, and nothing is written.
func TestDamage(t *testing.T) {
	// A pair from another lab: signed by a CA this lab does not have.
	otherDir, _ := newLab(t, testSpec())
	copyFrom := func(rel string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			for _, ext := range []string{".crt", ".key"} {
				b, err := os.ReadFile(filepath.Join(otherDir, rel+ext))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, rel+ext), b, 0o600)
			}
		}
	}
	remove := func(rels ...string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			for _, rel := range rels {
				if err := os.Remove(filepath.Join(dir, rel)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	copyKey := func(from, to string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			b, err := os.ReadFile(filepath.Join(dir, from))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, to), b, 0o600)
		}
	}
	const renewFix, caFix = "labbake pki renew", "to start a new lab"
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		file    string // the file the error names
		problem string
		fix     string
	}{
		{"leaf key missing", remove("apiserver.key"), "apiserver.key", "missing while apiserver.crt is there", renewFix},
		{"leaf cert missing", remove("machines/node1/kubelet-client.crt"), "machines/node1/kubelet-client.crt", "missing while", renewFix},
		{"cert not matching its key", copyKey("admin.key", "scheduler.key"), "scheduler.crt", "does not match its private key", renewFix},
		{"cert of another CA", copyFrom("machines/node1/kubelet"), "machines/node1/kubelet.crt", "not signed by its CA ca.crt", renewFix},
		{"etcd cert of another CA", copyFrom("machines/master/etcd-peer"), "machines/master/etcd-peer.crt", "not signed by its CA etcd/ca.crt", renewFix},
		{"leaf cert garbage", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "kube-proxy.crt"), []byte("junk\n"), 0o644)
		}, "kube-proxy.crt", "not a PEM certificate", renewFix},
		{"CA key missing", remove("etcd/ca.key"), "etcd/ca.key", "missing while etcd/ca.crt is there", caFix},
		{"CA cert missing", remove("ca.crt"), "ca.crt", "missing while ca.key is there", caFix},
		{"CA gone, its leaves there", remove("front-proxy-ca.crt", "front-proxy-ca.key"), "front-proxy-ca.key", "front-proxy-client", caFix},
		{"CA of another lab", copyFrom("ca"), "ca.crt", "signed none of the 12 certificates it should have (apiserver.crt, …)", "restore the lab's CA"},
		{"CA cert not matching its key", copyKey("etcd/ca.key", "ca.key"), "ca.crt", "does not match its private key", caFix},
		{"service-account public key missing", remove("sa.pub"), "sa.pub", "missing while sa.key is there", caFix},
		{"service-account keys gone", remove("sa.pub", "sa.key"), "sa.key", "void every service-account token", caFix},
		{"service-account keys of two pairs", copyKey("ca.key", "sa.key"), "sa.pub", "is not the public half of sa.key", caFix},
		{"host key missing", remove("machines/node2/ssh_host_ed25519_key"), "machines/node2/ssh_host_ed25519_key", "missing while", "delete both"},
		{"lab key not matching", copyKey("machines/node2/ssh_host_ed25519_key", "ssh/id_ed25519"), "ssh/id_ed25519", "not that of the private key", "delete both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := newLab(t, testSpec())
			tc.damage(t, dir)
			before := snapshot(t, dir)
			_, err := Ensure(dir, testSpec())
			var de *DamageError
			if !errors.As(err, &de) {
				t.Fatalf("Ensure: %v, want a *DamageError", err)
			}
			if want := filepath.Join(dir, tc.file); de.File != want {
				t.Errorf("error names %s, want %s (%v)", de.File, want, err)
			}
			if !strings.Contains(de.Problem, tc.problem) || !strings.Contains(de.Fix, tc.fix) {
				t.Errorf("error %q: want the problem %q and the fix %q", err, tc.problem, tc.fix)
			}
			if d := changed(before, snapshot(t, dir)); len(d) != 0 {
				t.Errorf("a refused Ensure changed %v", d)
			}
			// Renew repairs what the error says it does, and refuses the rest.
			_, rerr := Renew(dir, testSpec())
			if !strings.Contains(de.Fix, renewFix) {
				if rerr == nil {
					t.Fatalf("Renew accepted: %s", tc.name)
				}
				if d := changed(before, snapshot(t, dir)); len(d) != 0 {
					t.Errorf("a refused Renew changed %v", d)
				}
				return
			}
			if rerr != nil {
				t.Fatalf("Renew: %v", rerr)
			}
			if _, err := Ensure(dir, testSpec()); err != nil {
				t.Errorf("Ensure after Renew: %v", err)
			}
		})
	}
}

func TestSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Spec)
		want   string
	}{
		{"no name", func(s *Spec) { s.LabName = "" }, "no name"},
		{"no time", func(s *Spec) { s.Now = time.Time{} }, "issuance time"},
		{"bad domain", func(s *Spec) { s.ClusterDomain = "Cluster Local" }, "not a DNS name"},
		{"no service CIDR", func(s *Spec) { s.ServiceCIDR = netip.Prefix{} }, "service CIDR"},
		{"same name", func(s *Spec) { s.Machines[2].Name = "node1" }, `"node1" is given twice`},
		{"same IP", func(s *Spec) { s.Machines[2].IP = s.Machines[1].IP }, "same IP address"},
		{"bad name", func(s *Spec) { s.Machines[1].Name = "Node_1" }, "not a DNS label"},
		{"no IP", func(s *Spec) { s.Machines[1].IP = netip.Addr{} }, "no IP address"},
		{"bad authorized key", func(s *Spec) { s.AuthorizedKeys = []string{"ssh-ed25519 nonsense"} }, "authorized key 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec()
			tc.change(&spec)
			dir := filepath.Join(t.TempDir(), "pki")
			_, err := Ensure(dir, spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Ensure: %v, want an error saying %q", err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused spec made %s", dir)
			}
		})
	}
}

func BenchmarkEnsureNewLab(b *testing.B) {
	for b.Loop() {
		if _, err := Ensure(filepath.Join(b.TempDir(), "pki"), testSpec()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnsureExistingLab(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "pki")
	if _, err := Ensure(dir, testSpec()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Ensure(dir, testSpec()); err != nil {
			b.Fatal(err)
		}
	}
}
