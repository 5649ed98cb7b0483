package seed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// These tests hand the documents to the host's cloud-init (the tool that
// reads them in the guest): its schema validator and its network renderers.

func samples(t *testing.T) map[string]Machine {
	return map[string]Machine{"master": sampleMaster(t), "node-one": sampleNode(t), "hostile": hostileMachine(t)}
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCloudInitSchema(t *testing.T) {
	needTool(t, "cloud-init")
	for name, m := range samples(t) {
		t.Run(name, func(t *testing.T) {
			s, err := Render(m)
			if err != nil {
				t.Fatal(err)
			}
			p := writeTemp(t, "user-data", s.UserData)
			out, err := exec.Command("cloud-init", "schema", "--config-file", p).CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("Valid cloud-config")) || bytes.Contains(out, []byte("DEPRECATED")) {
				t.Fatalf("cloud-init schema: %v\n%s\nuser-data:\n%s", err, out, s.UserData)
			}
		})
	}

	// The validator really validates: the master's user-data with two
	// values broken is refused, and --annotate marks both lines.
	s, err := Render(sampleMaster(t))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(s.UserData), "disable_root: false", "disable_root: nope", 1)
	bad = regexp.MustCompile(`(?m)^ssh_genkeytypes:\n(  - .*\n)+`).ReplaceAllString(bad, "ssh_genkeytypes: []\n")
	if bad == string(s.UserData) {
		t.Fatal("breaking the user-data changed nothing")
	}
	p := writeTemp(t, "bad-user-data", []byte(bad))
	out, err := exec.Command("cloud-init", "schema", "--config-file", p).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("disable_root: 'nope' is not of type 'boolean'")) || !bytes.Contains(out, []byte("ssh_genkeytypes: [] is too short")) {
		t.Fatalf("cloud-init schema accepted a broken user-data (err %v):\n%s", err, out)
	}
	// cloud-init 22.4 exits 0 with --annotate; the marks are the verdict.
	out, _ = exec.Command("cloud-init", "schema", "--config-file", p, "--annotate").CombinedOutput()
	for _, re := range []string{`(?m)^disable_root: nope\s+# E\d`, `(?m)^ssh_genkeytypes: \[\]\s+# E\d`, `(?m)^# E\d: 'nope' is not of type 'boolean'`} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("--annotate output does not match %s:\n%s", re, out)
		}
	}
}

// cloudInitVersion is the host cloud-init's major and minor version.
func cloudInitVersion(t *testing.T) (int, int) {
	out, err := exec.Command("cloud-init", "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("cloud-init --version: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no version in %q", out)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return major, minor
}

func netConvert(t *testing.T, networkConfig []byte, kind string) string {
	t.Helper()
	in := writeTemp(t, "network-config", networkConfig)
	dir := t.TempDir()
	out, err := exec.Command("cloud-init", "devel", "net-convert", "--network-data", in, "--kind", "yaml",
		"--distro", "debian", "--output-kind", kind, "--directory", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("net-convert to %s: %v\n%s", kind, err, out)
	}
	return dir
}

// section is one [Name] of a systemd .network file.
type section struct {
	name string
	keys map[string]string
}

// parseNetworkd reads a .network file as systemd does: blank lines and
// comments do not end a section.
func parseNetworkd(t *testing.T, path string) []section {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var secs []section
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			secs = append(secs, section{name: line[1 : len(line)-1], keys: map[string]string{}})
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || len(secs) == 0 {
				t.Fatalf("%s: stray line %q", path, line)
			}
			secs[len(secs)-1].keys[k] = v
		}
	}
	return secs
}

func sectionsNamed(secs []section, name string) []map[string]string {
	var out []map[string]string
	for _, s := range secs {
		if s.name == name {
			out = append(out, s.keys)
		}
	}
	return out
}

func TestNetConvertNetworkd(t *testing.T) {
	needTool(t, "cloud-init")
	major, minor := cloudInitVersion(t)
	metricsKept := major > 23 || major == 23 && minor >= 3 // cloud-init PR 4220

	for _, tc := range []struct {
		name string
		m    Machine
	}{{"bridge only", sampleMaster(t)}, {"with uplink", sampleNode(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Render(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(netConvert(t, s.NetworkConfig, "networkd"), "etc", "systemd", "network")
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var files []string
			for _, e := range entries {
				files = append(files, e.Name())
			}
			want := []string{"10-cloud-init-lab0.network"}
			if tc.m.UplinkMAC != "" {
				want = append(want, "10-cloud-init-uplink0.network")
			}
			if !reflect.DeepEqual(files, want) {
				t.Fatalf("rendered %v, want %v", files, want)
			}

			lab := parseNetworkd(t, filepath.Join(dir, want[0]))
			expect := func(secs []section, sec string, kv map[string]string) {
				t.Helper()
				got := sectionsNamed(secs, sec)
				if len(got) != 1 {
					t.Fatalf("[%s] sections: %v, want one with %v", sec, got, kv)
				}
				for k, v := range kv {
					if got[0][k] != v {
						t.Errorf("[%s] %s=%q, want %q (section %v)", sec, k, got[0][k], v, got[0])
					}
				}
			}
			expect(lab, "Match", map[string]string{"MACAddress": tc.m.LabMAC, "Name": LabInterface})
			expect(lab, "Address", map[string]string{"Address": tc.m.Address.String()})
			var dns, search []string
			for _, a := range tc.m.Nameservers {
				dns = append(dns, a.String())
			}
			search = tc.m.SearchDomains
			expect(lab, "Network", map[string]string{"DHCP": "no", "DNS": strings.Join(dns, " "), "Domains": strings.Join(search, " ")})
			expect(lab, "Route", map[string]string{"Destination": "0.0.0.0/0", "Gateway": tc.m.Gateway.String()})
			route := sectionsNamed(lab, "Route")[0]
			switch metric, ok := route["Metric"]; {
			case ok && metric != strconv.Itoa(LabRouteMetric):
				t.Errorf("lab route Metric=%s, want %d", metric, LabRouteMetric)
			case !ok && metricsKept:
				t.Errorf("cloud-init %d.%d dropped the lab route's metric", major, minor)
			case !ok:
				t.Logf("cloud-init %d.%d drops version-2 route metrics in networkd files (fixed in 23.3): the lab route gets metric 0 there", major, minor)
			}

			if tc.m.UplinkMAC == "" {
				return
			}
			up := parseNetworkd(t, filepath.Join(dir, want[1]))
			expect(up, "Match", map[string]string{"MACAddress": tc.m.UplinkMAC, "Name": UplinkInterface})
			expect(up, "Network", map[string]string{"DHCP": "ipv4"})
			expect(up, "DHCPv4", map[string]string{"RouteMetric": strconv.Itoa(UplinkRouteMetric)})
			if len(sectionsNamed(up, "Address")) != 0 || len(sectionsNamed(up, "Route")) != 0 {
				t.Errorf("uplink has static addresses or routes: %v", up)
			}
		})
	}
}

func TestNetConvertENI(t *testing.T) {
	needTool(t, "cloud-init")
	m := sampleNode(t)
	s, err := Render(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := netConvert(t, s.NetworkConfig, "eni")
	eni, err := os.ReadFile(filepath.Join(dir, "etc", "network", "interfaces.d", "50-cloud-init"))
	if err != nil {
		t.Fatal(err)
	}
	stanza := func(iface string) string {
		_, after, ok := strings.Cut(string(eni), "\niface "+iface+" ")
		if !ok {
			t.Fatalf("no iface %s in:\n%s", iface, eni)
		}
		before, _, _ := strings.Cut(after, "\nauto ")
		return before
	}
	for iface, lines := range map[string][]string{
		LabInterface:    {"inet static", "address " + m.Address.String(), "post-up route add default gw " + m.Gateway.String(), "dns-nameservers 172.18.0.1 10.100.0.10", "dns-search mylab.internal cluster.local"},
		UplinkInterface: {"inet dhcp", fmt.Sprintf("metric %d", UplinkRouteMetric)},
	} {
		st := stanza(iface)
		for _, l := range lines {
			if !strings.Contains(st, l) {
				t.Errorf("iface %s lacks %q:\n%s", iface, l, st)
			}
		}
	}
	rules, err := os.ReadFile(filepath.Join(dir, "etc", "udev", "rules.d", "70-persistent-net.rules"))
	if err != nil {
		t.Fatal(err)
	}
	for mac, name := range map[string]string{m.LabMAC: LabInterface, m.UplinkMAC: UplinkInterface} {
		if !strings.Contains(string(rules), `ATTR{address}=="`+mac+`", NAME="`+name+`"`) {
			t.Errorf("udev rules do not rename %s to %s:\n%s", mac, name, rules)
		}
	}
}

// TestNetConvertNetplan: with netplan, cloud-init passes the config through;
// what it writes must be what labbake meant (read by PyYAML: a MAC must not
// turn into a number, metric and optional must survive).
func TestNetConvertNetplan(t *testing.T) {
	needTool(t, "cloud-init")
	for name, m := range samples(t) {
		t.Run(name, func(t *testing.T) {
			s, err := Render(m)
			if err != nil {
				t.Fatal(err)
			}
			out, err := os.ReadFile(filepath.Join(netConvert(t, s.NetworkConfig, "netplan"), "etc", "netplan", "50-cloud-init.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := pyLoad(t, out).(map[string]any)
			if !ok {
				t.Fatalf("netplan output is not a mapping:\n%s", out)
			}
			if want := goLoad(t, s.NetworkConfig); !reflect.DeepEqual(got["network"], want) {
				t.Fatalf("netplan output\n%s\ndiffers from the network-config\n%s", out, s.NetworkConfig)
			}
		})
	}
}

// TestPyYAML: cloud-init reads the documents with PyYAML (YAML 1.1); every
// document of every sample, the hostile one included, must mean the same to
// it as to go-yaml (YAML 1.2).
func TestPyYAML(t *testing.T) {
	for name, m := range samples(t) {
		s, err := Render(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range s.Files() {
			if py, gy := pyLoad(t, d.Data), goLoad(t, d.Data); !reflect.DeepEqual(py, gy) {
				t.Errorf("%s/%s: PyYAML reads\n%v\ngo-yaml reads\n%v", name, d.Name, py, gy)
			}
		}
	}
}

// pyLoad reads YAML as cloud-init does (PyYAML's safe_load, with
// cloud-init's interpreter), through JSON.
func pyLoad(t *testing.T, data []byte) any {
	t.Helper()
	py := cloudInitPython(t)
	cmd := exec.Command(py, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin.buffer), sys.stdout, sort_keys=True)")
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("PyYAML: %v\n%s", err, stderr.Bytes())
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// goLoad reads YAML with go-yaml, through JSON so numbers compare with
// pyLoad's.
func goLoad(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(j, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// hostileMachine is valid but has every caller string a YAML reader could
// take for something else: MACs of digits only (base-60 integers to YAML
// 1.1), key comments and paths with YAML syntax, a search domain that is a
// YAML 1.1 boolean, binary file content.
func hostileMachine(t testing.TB) Machine {
	m := sampleNode(t)
	m.Name, m.FQDN = "on", "on.yes"
	m.LabMAC, m.UplinkMAC = "12:34:56:00:00:01", "52:54:00:00:00:59"
	m.SearchDomains = []string{"no", "off.true", "null", "0644", "1e3", "1-2-3"}
	m.Nameservers = []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::53")}
	pub := strings.Fields(key(t, "lab_user_ed25519.pub"))
	m.AuthorizedKeys = []string{
		`command="echo 'hi: there' # \"x\"",no-pty ` + pub[0] + " " + pub[1] + ` comment: {a: [b]} & *x !tag %TAG # not a comment`,
		pub[0] + " " + pub[1] + " ü日本 '\"\\",
		pub[0] + " " + pub[1],
	}
	m.Files = []File{
		{Path: "/etc/x: y", Content: []byte("plain"), Mode: 0o644},
		{Path: "/tmp/#not a comment", Content: []byte{0, 1, 2, 0xff, '\n', '\r'}, Mode: 0o600},
		{Path: "/tmp/ - item", Content: []byte("---\n...\n"), Mode: 0o4755},
		{Path: `/tmp/"quoted" 'single' \back`, Content: nil, Mode: 0o1777},
		{Path: "/tmp/{a: b}, [c] &anchor *alias !tag |>", Content: []byte("x"), Mode: 0o7},
		{Path: "/tmp/trailing space ", Content: []byte("   "), Mode: 0o640},
		{Path: "/tmp/ü日本", Content: []byte("ü"), Mode: 0o644},
		{Path: "/1:20", Content: []byte("sexagesimal"), Mode: 0o644},
	}
	return m
}
