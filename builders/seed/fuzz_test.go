package seed

import (
	"bytes"
	"encoding/base64"
	"io/fs"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Mirrors of the documents for reading them back strictly (every key the
// writer may emit, no other), independent of the types that write them.
type readUserData struct {
	Hostname       string `yaml:"hostname"`
	FQDN           string `yaml:"fqdn"`
	ManageEtcHosts bool   `yaml:"manage_etc_hosts"`
	Locale         string `yaml:"locale"`
	Apt            struct {
		PreserveSourcesList bool `yaml:"preserve_sources_list"`
	} `yaml:"apt"`
	Users []struct {
		Name              string   `yaml:"name"`
		LockPasswd        bool     `yaml:"lock_passwd"`
		SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys"`
	} `yaml:"users"`
	DisableRoot    bool              `yaml:"disable_root"`
	SSHDeleteKeys  bool              `yaml:"ssh_deletekeys"`
	SSHGenKeyTypes []string          `yaml:"ssh_genkeytypes"`
	SSHKeys        map[string]string `yaml:"ssh_keys"`
	WriteFiles     []struct {
		Path        string `yaml:"path"`
		Owner       string `yaml:"owner"`
		Permissions string `yaml:"permissions"`
		Encoding    string `yaml:"encoding"`
		Content     string `yaml:"content"`
	} `yaml:"write_files"`
}

type readNetworkConfig struct {
	Version   int `yaml:"version"`
	Ethernets map[string]struct {
		Match struct {
			MACAddress string `yaml:"macaddress"`
		} `yaml:"match"`
		SetName        string `yaml:"set-name"`
		DHCP4          bool   `yaml:"dhcp4"`
		DHCP6          bool   `yaml:"dhcp6"`
		DHCP4Overrides struct {
			RouteMetric int `yaml:"route-metric"`
		} `yaml:"dhcp4-overrides"`
		Addresses []string `yaml:"addresses"`
		Routes    []struct {
			To     string `yaml:"to"`
			Via    string `yaml:"via"`
			Metric int    `yaml:"metric"`
		} `yaml:"routes"`
		Nameservers struct {
			Addresses []string `yaml:"addresses"`
			Search    []string `yaml:"search"`
		} `yaml:"nameservers"`
		Optional bool `yaml:"optional"`
	} `yaml:"ethernets"`
}

type readMetaData struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname"`
}

// FuzzRender: whatever strings the caller passes, Render does not panic,
// and a seed it renders reads back (strict YAML, known keys only) to exactly
// the values it was given: nothing in a name, path, key comment or file can
// add, drop or change a key.
func FuzzRender(f *testing.F) {
	f.Add("master", "master.lab", "lab", "/etc/x", []byte("hello\n"), "lab@labbake", uint32(0o644))
	f.Add("on", "on.yes", "no", "/tmp/#x: y", []byte{0, 0xff}, `"; - x: [y]`, uint32(0o4755))
	f.Add("a", "a.b", "1e3", "/a\n- path: /b", []byte("---\n"), "x\nssh-ed25519 AAAA", uint32(0o10000))
	f.Add("node-1", "node-1.x", "0644", "/ü日本 '\"\\", []byte("|\n  >"), "\u2028", uint32(0o7))
	base := sampleMaster(f)
	f.Fuzz(func(t *testing.T, name, fqdn, search, path string, content []byte, comment string, mode uint32) {
		m := base
		m.Name, m.FQDN = name, fqdn
		m.SearchDomains = []string{search}
		pub := strings.Fields(m.AuthorizedKeys[0])
		m.AuthorizedKeys = []string{pub[0] + " " + pub[1] + " " + comment}
		m.Files = append(append([]File(nil), base.Files...), File{Path: path, Content: content, Mode: fs.FileMode(mode)})

		s, err := Render(m)
		if err != nil {
			if s != nil {
				t.Fatal("a seed and an error")
			}
			return
		}

		var md readMetaData
		strict(t, s.MetaData, &md)
		if md.LocalHostname != name || md.InstanceID != s.InstanceID {
			t.Fatalf("meta-data reads back %+v", md)
		}

		var nc readNetworkConfig
		strict(t, s.NetworkConfig, &nc)
		lab, ok := nc.Ethernets[LabInterface]
		if nc.Version != 2 || len(nc.Ethernets) != 1 || !ok || lab.Match.MACAddress != m.LabMAC ||
			len(lab.Nameservers.Search) != 1 || lab.Nameservers.Search[0] != search {
			t.Fatalf("network-config reads back %+v", nc)
		}

		if !bytes.HasPrefix(s.UserData, []byte("#cloud-config\n")) {
			t.Fatal("user-data lost its header")
		}
		var ud readUserData
		strict(t, s.UserData, &ud)
		if ud.Hostname != name || ud.FQDN != fqdn || !ud.ManageEtcHosts || ud.Locale != "C.UTF-8" || !ud.Apt.PreserveSourcesList ||
			ud.DisableRoot || !ud.SSHDeleteKeys || strings.Join(ud.SSHGenKeyTypes, ",") != "ed25519" {
			t.Fatalf("user-data reads back as %+v", ud)
		}
		if len(ud.Users) != 1 || ud.Users[0].Name != "root" || !ud.Users[0].LockPasswd || len(ud.Users[0].SSHAuthorizedKeys) != 1 ||
			ud.Users[0].SSHAuthorizedKeys[0] != strings.TrimSpace(m.AuthorizedKeys[0]) {
			t.Fatalf("users read back as %+v", ud.Users)
		}
		if len(ud.SSHKeys) != 2 || ud.SSHKeys["ed25519_public"] != strings.TrimSpace(m.HostKeys[0].Public) {
			t.Fatalf("ssh_keys read back as %v", ud.SSHKeys)
		}
		want := append([]File{{Path: SSHDPolicyPath, Mode: 0o600, Content: []byte(SSHDPolicy)}}, m.Files...)
		if len(ud.WriteFiles) != len(want) {
			t.Fatalf("%d write_files, want %d", len(ud.WriteFiles), len(want))
		}
		for i, w := range ud.WriteFiles {
			got, err := base64.StdEncoding.DecodeString(w.Content)
			if err != nil || w.Encoding != "b64" || w.Owner != "root:root" || w.Path != want[i].Path || !bytes.Equal(got, want[i].Content) ||
				w.Permissions != octalMode(uint32(want[i].Mode)) {
				t.Fatalf("write_files[%d] reads back as %+v (err %v), want %+v", i, w, err, want[i])
			}
		}
	})
}

// strict decodes YAML refusing unknown keys, so an injected key fails.
func strict(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
}
