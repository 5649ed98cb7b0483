package seed

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/golden"
)

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		dir string
		m   func(testing.TB) Machine
	}{
		{"master", sampleMaster},
		{"node-one", sampleNode},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			s, err := Render(tc.m(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range s.Files() {
				golden.Check(t, filepath.Join("testdata", tc.dir, d.Name), d.Data)
			}
		})
	}
}

func TestFilesOrderAndContent(t *testing.T) {
	s, err := Render(sampleMaster(t))
	if err != nil {
		t.Fatal(err)
	}
	docs := s.Files()
	var names []string
	for _, d := range docs {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, ","); got != "meta-data,network-config,user-data" {
		t.Fatalf("Files names = %s", got)
	}
	if !bytes.Equal(docs[0].Data, s.MetaData) || !bytes.Equal(docs[1].Data, s.NetworkConfig) || !bytes.Equal(docs[2].Data, s.UserData) {
		t.Fatal("Files does not hand out the seed's documents")
	}
	if !bytes.HasPrefix(s.UserData, []byte("#cloud-config\n")) {
		t.Fatalf("user-data does not start with #cloud-config: %q", s.UserData[:20])
	}
	if !bytes.Contains(s.MetaData, []byte(`instance-id: "`+s.InstanceID+`"`)) {
		t.Fatalf("meta-data does not carry InstanceID %s:\n%s", s.InstanceID, s.MetaData)
	}
}

func TestDeterministic(t *testing.T) {
	for _, m := range []Machine{sampleMaster(t), sampleNode(t)} {
		a, err := Render(m)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			b, err := Render(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.MetaData, b.MetaData) || !bytes.Equal(a.UserData, b.UserData) || !bytes.Equal(a.NetworkConfig, b.NetworkConfig) {
				t.Fatalf("%s: two renders differ", m.Name)
			}
		}
	}
}

// TestInstanceID: the instance id changes with any content of the seed and
// only with it.
func TestInstanceID(t *testing.T) {
	base := sampleNode(t)
	s0, err := Render(base)
	if err != nil {
		t.Fatal(err)
	}
	same := sampleNode(t)
	if s, err := Render(same); err != nil || s.InstanceID != s0.InstanceID {
		t.Fatalf("an equal machine gave instance id %v (err %v), want %s", s.InstanceID, err, s0.InstanceID)
	}
	// A renamed-but-equal copy of the slices must not matter either.
	same.Files = append([]File(nil), same.Files...)
	if s, _ := Render(same); s.InstanceID != s0.InstanceID {
		t.Fatal("copying the Files slice changed the instance id")
	}

	seen := map[string]string{s0.InstanceID: "base"}
	for _, tc := range []struct {
		name   string
		change func(m *Machine)
	}{
		{"name", func(m *Machine) { m.Name, m.FQDN = "node-two", "node-two.mylab.internal" }},
		{"fqdn", func(m *Machine) { m.FQDN = "node-one.otherlab.internal" }},
		{"lab MAC", func(m *Machine) { m.LabMAC = "52:54:00:00:00:01" }},
		{"address", func(m *Machine) { m.Address = netip.MustParsePrefix("172.18.100.123/16") }},
		{"prefix length", func(m *Machine) {
			m.Address = netip.MustParsePrefix("172.18.100.122/24")
			m.Gateway = netip.MustParseAddr("172.18.100.1")
		}},
		{"gateway", func(m *Machine) { m.Gateway = netip.MustParseAddr("172.18.0.2") }},
		{"nameserver", func(m *Machine) { m.Nameservers = m.Nameservers[:1] }},
		{"search domain", func(m *Machine) { m.SearchDomains = []string{"cluster.local"} }},
		{"no uplink", func(m *Machine) { m.UplinkMAC = "" }},
		{"uplink MAC", func(m *Machine) { m.UplinkMAC = "52:54:00:12:34:57" }},
		{"authorized key dropped", func(m *Machine) { m.AuthorizedKeys = m.AuthorizedKeys[:1] }},
		{"authorized key comment", func(m *Machine) { m.AuthorizedKeys[0] = strings.TrimSpace(m.AuthorizedKeys[0]) + "-renamed" }},
		{"host key dropped", func(m *Machine) { m.HostKeys = m.HostKeys[1:] }},
		{"host key replaced", func(m *Machine) { m.HostKeys[1] = hostKey(t, "ed25519", "master_host_ed25519") }},
		{"file content (PKI renew)", func(m *Machine) {
			m.Files[1].Content = append(append([]byte(nil), m.Files[1].Content...), '\n')
		}},
		{"file mode", func(m *Machine) { m.Files[1].Mode = 0o640 }},
		{"file path", func(m *Machine) { m.Files[1].Path = "/etc/kubernetes/kubelet.conf" }},
		{"file added", func(m *Machine) { m.Files = append(m.Files, File{Path: "/etc/x", Content: []byte("x"), Mode: 0o644}) }},
		{"files reordered", func(m *Machine) { m.Files[1], m.Files[2] = m.Files[2], m.Files[1] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := sampleNode(t)
			tc.change(&m)
			s, err := Render(m)
			if err != nil {
				t.Fatal(err)
			}
			if prev, dup := seen[s.InstanceID]; dup {
				t.Fatalf("instance id %s is the same as for %q", s.InstanceID, prev)
			}
			seen[s.InstanceID] = tc.name
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(m *Machine)
		want   []string // fields named by the error, in order
	}{
		{"valid", func(m *Machine) {}, nil},
		{"upper-case name", func(m *Machine) { m.Name, m.FQDN = "Master", "Master.lab" }, []string{"Name", "FQDN"}},
		{"name with dot", func(m *Machine) { m.Name = "a.b" }, []string{"Name", "FQDN"}},
		{"name too long", func(m *Machine) { m.Name = strings.Repeat("a", 64); m.FQDN = m.Name + ".lab" }, []string{"Name", "FQDN"}},
		{"name with hyphen at end", func(m *Machine) { m.Name, m.FQDN = "node-", "node-.lab" }, []string{"Name", "FQDN"}},
		{"fqdn missing", func(m *Machine) { m.FQDN = "" }, []string{"FQDN"}},
		{"fqdn of another host", func(m *Machine) { m.FQDN = "node-two.mylab.internal" }, []string{"FQDN"}},
		{"fqdn with empty label", func(m *Machine) { m.FQDN = "node-one..lab" }, []string{"FQDN"}},
		{"fqdn with newline", func(m *Machine) { m.FQDN = "node-one.lab\nruncmd: [reboot]" }, []string{"FQDN"}},
		{"lab MAC missing", func(m *Machine) { m.LabMAC = "" }, []string{"LabMAC"}},
		{"lab MAC garbage", func(m *Machine) { m.LabMAC = "52:54:zz:00:00:01" }, []string{"LabMAC"}},
		{"lab MAC dashed", func(m *Machine) { m.LabMAC = "52-54-00-00-00-01" }, nil}, // written with colons: TestCanonicalMAC
		{"lab MAC dotted", func(m *Machine) { m.LabMAC = "5254.0000.0001" }, []string{"LabMAC"}},
		{"lab MAC zero", func(m *Machine) { m.LabMAC = "00:00:00:00:00:00" }, []string{"LabMAC"}},
		{"lab MAC of 8 bytes", func(m *Machine) { m.LabMAC = "52:54:00:00:00:01:02:03" }, []string{"LabMAC"}},
		{"lab MAC multicast", func(m *Machine) { m.LabMAC = "01:00:5e:00:00:01" }, []string{"LabMAC"}},
		{"uplink MAC garbage", func(m *Machine) { m.UplinkMAC = "uplink" }, []string{"UplinkMAC"}},
		{"uplink MAC equals lab MAC", func(m *Machine) { m.UplinkMAC = strings.ToUpper(m.LabMAC) }, []string{"UplinkMAC"}},
		{"address missing", func(m *Machine) { m.Address = netip.Prefix{} }, []string{"Address"}},
		{"address is the network", func(m *Machine) { m.Address = netip.MustParsePrefix("172.18.0.0/16") }, []string{"Address"}},
		{"address is broadcast", func(m *Machine) { m.Address = netip.MustParsePrefix("172.18.255.255/16") }, []string{"Address"}},
		{"address loopback", func(m *Machine) { m.Address = netip.MustParsePrefix("127.0.0.2/8") }, []string{"Address", "Gateway"}},
		{"address IPv6", func(m *Machine) { m.Address = netip.MustParsePrefix("fd00:18::100/64") }, []string{"Address", "Gateway"}},
		{"address IPv4-mapped", func(m *Machine) { m.Address = netip.MustParsePrefix("::ffff:172.18.100.122/112") }, []string{"Address", "Gateway"}},
		{"gateway IPv6", func(m *Machine) { m.Gateway = netip.MustParseAddr("fd00:18::1") }, []string{"Gateway"}},
		{"address /32", func(m *Machine) { m.Address = netip.MustParsePrefix("172.18.100.122/32") }, []string{"Gateway"}},
		{"gateway missing", func(m *Machine) { m.Gateway = netip.Addr{} }, []string{"Gateway"}},
		{"gateway off network", func(m *Machine) { m.Gateway = netip.MustParseAddr("10.0.0.1") }, []string{"Gateway"}},
		{"gateway is self", func(m *Machine) { m.Gateway = m.Address.Addr() }, []string{"Gateway"}},
		{"nameserver invalid", func(m *Machine) { m.Nameservers = append(m.Nameservers, netip.Addr{}) }, []string{"Nameservers[2]"}},
		{"search domain bad", func(m *Machine) { m.SearchDomains = []string{"ok.lab", "-bad"} }, []string{"SearchDomains[1]"}},
		{"no authorized keys", func(m *Machine) { m.AuthorizedKeys = nil }, []string{"AuthorizedKeys"}},
		{"authorized key garbage", func(m *Machine) { m.AuthorizedKeys[1] = "ssh-ed25519 not-base64" }, []string{"AuthorizedKeys[1]"}},
		{"two keys in one entry", func(m *Machine) { m.AuthorizedKeys[0] = m.AuthorizedKeys[0] + "\n" + m.AuthorizedKeys[1] }, []string{"AuthorizedKeys[0]"}},
		{"authorized key with control char", func(m *Machine) { m.AuthorizedKeys[0] = strings.TrimSpace(m.AuthorizedKeys[0]) + "\x1b[2J" }, []string{"AuthorizedKeys[0]"}},
		{"no host keys", func(m *Machine) { m.HostKeys = nil }, []string{"HostKeys"}},
		{"host key type unknown", func(m *Machine) { m.HostKeys[0].Type = "dsa" }, []string{"HostKeys[0].Type"}},
		{"host key type twice", func(m *Machine) { m.HostKeys[0] = m.HostKeys[1] }, []string{"HostKeys[1].Type"}},
		{"host key type mismatch", func(m *Machine) { m.HostKeys[0].Type = "ed25519"; m.HostKeys[1].Type = "rsa" }, []string{"HostKeys[0].Public", "HostKeys[1].Public"}},
		{"host key halves of two keys", func(m *Machine) { m.HostKeys[1].Public = key(t, "master_host_ed25519.pub") }, []string{"HostKeys[1].Private"}},
		{"host key private garbage", func(m *Machine) {
			m.HostKeys[2].Private = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
		}, []string{"HostKeys[2].Private"}},
		{"host key private encrypted", func(m *Machine) {
			m.HostKeys[1] = HostKey{Type: "ed25519", Private: key(t, "encrypted_ed25519"), Public: key(t, "encrypted_ed25519.pub")}
		}, []string{"HostKeys[1].Private"}},
		{"host key private not PEM", func(m *Machine) { m.HostKeys[0].Private = "hello" }, []string{"HostKeys[0].Private"}},
		{"host key public empty", func(m *Machine) { m.HostKeys[0].Public = "" }, []string{"HostKeys[0].Public"}},
		{"file path relative", func(m *Machine) { m.Files[1].Path = "etc/x" }, []string{"Files[1].Path"}},
		{"file path not clean", func(m *Machine) { m.Files[1].Path = "/etc/../etc/x" }, []string{"Files[1].Path"}},
		{"file path trailing slash", func(m *Machine) { m.Files[1].Path = "/etc/x/" }, []string{"Files[1].Path"}},
		{"file path root", func(m *Machine) { m.Files[1].Path = "/" }, []string{"Files[1].Path"}},
		{"file path empty", func(m *Machine) { m.Files[1].Path = "" }, []string{"Files[1].Path"}},
		{"file path newline", func(m *Machine) { m.Files[1].Path = "/etc/x\n- path: /etc/y" }, []string{"Files[1].Path"}},
		{"file path not UTF-8", func(m *Machine) { m.Files[1].Path = "/etc/\xff" }, []string{"Files[1].Path"}},
		{"file path twice", func(m *Machine) { m.Files[2].Path = m.Files[0].Path }, []string{"Files[2].Path"}},
		{"file at /etc/hosts", func(m *Machine) { m.Files[1].Path = "/etc/hosts" }, []string{"Files[1].Path"}},
		{"file at a host key", func(m *Machine) { m.Files[1].Path = "/etc/ssh/ssh_host_ed25519_key" }, []string{"Files[1].Path"}},
		{"file at root's authorized_keys", func(m *Machine) { m.Files[1].Path = "/root/.ssh/authorized_keys" }, []string{"Files[1].Path"}},
		{"file mode zero", func(m *Machine) { m.Files[1].Mode = 0 }, []string{"Files[1].Mode"}},
		{"file mode with Go's setuid bit", func(m *Machine) { m.Files[1].Mode = 0o755 | os.ModeSetuid }, []string{"Files[1].Mode"}},
		{"file mode 0o10000", func(m *Machine) { m.Files[1].Mode = 0o10000 }, []string{"Files[1].Mode"}},
		{"everything at once", func(m *Machine) {
			m.Name, m.LabMAC, m.Address, m.AuthorizedKeys, m.Files[0].Mode = "", "", netip.Prefix{}, nil, 0
		}, []string{"Name", "FQDN", "LabMAC", "Address", "AuthorizedKeys", "Files[0].Mode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := sampleNode(t)
			tc.change(&m)
			s, err := Render(m)
			if len(tc.want) == 0 {
				if err != nil || s == nil {
					t.Fatalf("Render: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Render accepted the machine, want errors on %v", tc.want)
			}
			if s != nil {
				t.Fatal("Render returned a seed with an error")
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %v is not a *FieldError", e)
				}
				if !strings.HasPrefix(e.Error(), "seed: "+fe.Field+": ") {
					t.Errorf("error %q does not name its field %s", e, fe.Field)
				}
				got = append(got, fe.Field)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("errors name %v, want %v; errors:\n%v", got, tc.want, err)
			}
		})
	}
}

// TestModeSpelling: permissions are octal strings with a leading zero.
func TestModeSpelling(t *testing.T) {
	for _, tc := range []struct {
		mode uint32
		want string
	}{
		{0o644, "0644"}, {0o600, "0600"}, {0o7, "0007"}, {0o1, "0001"}, {0o755, "0755"}, {0o4755, "04755"}, {0o7777, "07777"},
	} {
		if got := octalMode(tc.mode); got != tc.want {
			t.Errorf("octalMode(%#o) = %s, want %s", tc.mode, got, tc.want)
		}
	}
}

// TestCanonicalMAC: MACs reach network-config lower-case and colon
// separated, as cloud-init's match wants them.
func TestCanonicalMAC(t *testing.T) {
	m := sampleNode(t)
	m.LabMAC, m.UplinkMAC = "52-54-AA-BB-CC-DD", "52:54:00:AB:CD:EF"
	s, err := Render(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`macaddress: "52:54:aa:bb:cc:dd"`, `macaddress: "52:54:00:ab:cd:ef"`} {
		if !bytes.Contains(s.NetworkConfig, []byte(want)) {
			t.Errorf("network-config lacks %s:\n%s", want, s.NetworkConfig)
		}
	}
}
