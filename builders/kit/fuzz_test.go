package kit

import (
	"regexp"
	"strings"
	"testing"
)

// envValue is what a value of an env file may hold: nothing that bash or
// systemd's EnvironmentFile= would read differently (quotes, $, \, `,
// spaces, ~, %, #, ;).
var envValue = regexp.MustCompile(`^[A-Za-z0-9._/+@:,=-]*$`)

// FuzzValidate feeds the lab's free-form fields to Validate: whatever it
// accepts must render, and every value must reach the env files, QEMU's
// options and ssh_config unchanged, with no character they would read
// differently.
func FuzzValidate(f *testing.F) {
	f.Add("master", "/srv/labbake/mylab/master.qcow2", "mylab.internal", "qemu0", "230.0.0.1:5555", "root", true)
	f.Add("node-one", "/srv/a b.qcow2", "a.b", "br-lab.1", "239.1.2.3:1", "", false)
	f.Add("x", "/srv/a,b.qcow2", "my$lab", "qemu 0", "[ff02::1]:5", "me;rm", true)
	f.Add("n1", "/srv/~/%i.qcow2", "lab.", "q\n", "230.0.0.1:0", "a\tb", false)
	f.Fuzz(func(t *testing.T, name, path, domain, bridge, mcast, user string, bridgeMode bool) {
		mode := ModeUser
		if bridgeMode {
			mode = ModeBridge
		}
		lab := goldenLab(mode)
		lab.Machines[0].Name = name
		lab.Machines[0].Image = path
		lab.Network.Domain = domain
		lab.Network.Bridge = bridge
		lab.Network.McastGroup = mcast
		lab.SSH.User = user
		if lab.Validate() != nil {
			return
		}
		files, err := Render(lab)
		if err != nil {
			t.Fatalf("Render refused a lab Validate accepted: %v", err)
		}
		for _, m := range lab.Machines {
			for _, line := range strings.Split(string(files["vm/"+m.Name+".env"]), "\n") {
				if line == "" || line[0] == '#' {
					continue
				}
				_, v, ok := strings.Cut(line, "=")
				if !ok || !envValue.MatchString(v) {
					t.Errorf("env file line %q", line)
				}
			}
			for _, a := range QEMUArgs(m, lab.Network, lab.Host) {
				// Every option with a path has it last, after file= or
				// path=: no comma may follow.
				if i := strings.LastIndex(a, "file="); i >= 0 && strings.Contains(a[i:], ",") {
					t.Errorf("QEMU option %q: a comma in a path", a)
				}
			}
		}
		if !strings.Contains(string(files["ssh_config"]), "\nHost "+name+"\n") {
			t.Errorf("ssh_config has no Host %q", name)
		}
		if bridgeMode && !strings.Contains(string(files["dnsmasq.conf"]), "\ndomain="+domain+"\n") {
			t.Errorf("dnsmasq.conf lacks domain=%s", domain)
		}
	})
}
