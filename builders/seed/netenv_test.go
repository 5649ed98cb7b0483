package seed

import (
	"errors"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

func labEnv() NetworkEnvironment {
	return NetworkEnvironment{
		NodeName:      "node-one",
		NodeIP:        netip.MustParseAddr("172.18.100.122"),
		MasterIP:      netip.MustParseAddr("172.18.100.187"),
		EtcdEndpoints: []string{"https://172.18.100.187:2379"},
		APIServerURL:  "https://172.18.100.187:6443",
		PodCIDR:       netip.MustParsePrefix("172.19.0.0/16"),
		ServiceCIDR:   netip.MustParsePrefix("10.100.0.0/24"),
		ClusterDNS:    netip.MustParseAddr("10.100.0.10"),
		ClusterDomain: "cluster.local",
	}
}

func TestNetworkEnvironmentFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *NetworkEnvironment)
		want   string   // the file, when valid
		fields []string // the fields named by the errors, when not
	}{
		{"original lab node", func(e *NetworkEnvironment) {}, `# /etc/network-environment of node-one, written by labbake.
NODE_NAME=node-one
NODE_IP=172.18.100.122
DEFAULT_IPV4=172.18.100.122
MASTER_IP=172.18.100.187
ETCD_ENDPOINTS=https://172.18.100.187:2379
KUBE_API_URL=https://172.18.100.187:6443
POD_CIDR=172.19.0.0/16
SERVICE_CIDR=10.100.0.0/24
CLUSTER_DNS=10.100.0.10
CLUSTER_DOMAIN=cluster.local
`, nil},
		{"three etcd members, API by name, IPv6 DNS", func(e *NetworkEnvironment) {
			e.NodeName = "master"
			e.NodeIP = e.MasterIP
			e.EtcdEndpoints = []string{"https://172.18.100.187:2379", "https://172.18.100.122:2379", "https://[fd00::3]:2379"}
			e.APIServerURL = "https://master.mylab.internal:6443"
			e.ClusterDNS = netip.MustParseAddr("fd00:100::10")
			e.ServiceCIDR = netip.MustParsePrefix("fd00:100::/108")
		}, `# /etc/network-environment of master, written by labbake.
NODE_NAME=master
NODE_IP=172.18.100.187
DEFAULT_IPV4=172.18.100.187
MASTER_IP=172.18.100.187
ETCD_ENDPOINTS=https://172.18.100.187:2379,https://172.18.100.122:2379,https://[fd00::3]:2379
KUBE_API_URL=https://master.mylab.internal:6443
POD_CIDR=172.19.0.0/16
SERVICE_CIDR=fd00:100::/108
CLUSTER_DNS=fd00:100::10
CLUSTER_DOMAIN=cluster.local
`, nil},
		{"empty: no cluster fields asked for", func(e *NetworkEnvironment) { *e = NetworkEnvironment{} }, "",
			[]string{"NodeName", "NodeIP", "ClusterDNS", "PodCIDR", "ServiceCIDR", "ClusterDomain"}},
		{"a cluster field asks for all", func(e *NetworkEnvironment) { e.MasterIP, e.APIServerURL = netip.Addr{}, "" }, "",
			[]string{"MasterIP", "APIServerURL"}},
		{"no control plane", func(e *NetworkEnvironment) { e.MasterIP, e.EtcdEndpoints, e.APIServerURL = netip.Addr{}, nil, "" },
			"# /etc/network-environment of node-one, written by labbake.\nNODE_NAME=node-one\nNODE_IP=172.18.100.122\nDEFAULT_IPV4=172.18.100.122\n" +
				"POD_CIDR=172.19.0.0/16\nSERVICE_CIDR=10.100.0.0/24\nCLUSTER_DNS=10.100.0.10\nCLUSTER_DOMAIN=cluster.local\n", nil},
		{"bad node name", func(e *NetworkEnvironment) { e.NodeName = "node one" }, "", []string{"NodeName"}},
		{"http etcd", func(e *NetworkEnvironment) { e.EtcdEndpoints = append(e.EtcdEndpoints, "http://172.18.100.187:2379") }, "", []string{"EtcdEndpoints[1]"}},
		{"etcd without port", func(e *NetworkEnvironment) { e.EtcdEndpoints[0] = "https://172.18.100.187" }, "", []string{"EtcdEndpoints[0]"}},
		{"etcd with path", func(e *NetworkEnvironment) { e.EtcdEndpoints[0] = "https://172.18.100.187:2379/v3" }, "", []string{"EtcdEndpoints[0]"}},
		{"etcd list in one string", func(e *NetworkEnvironment) { e.EtcdEndpoints[0] = "https://a:2379,https://b:2379" }, "", []string{"EtcdEndpoints[0]"}},
		{"etcd list with one scheme", func(e *NetworkEnvironment) { e.EtcdEndpoints[0] = "https://a:2379,b:2379" }, "", []string{"EtcdEndpoints[0]"}},
		{"etcd port out of range", func(e *NetworkEnvironment) { e.EtcdEndpoints[0] = "https://a:65536" }, "", []string{"EtcdEndpoints[0]"}},
		{"etcd port with leading zero", func(e *NetworkEnvironment) { e.EtcdEndpoints[0] = "https://a:02379" }, "", []string{"EtcdEndpoints[0]"}},
		{"API URL with shell", func(e *NetworkEnvironment) { e.APIServerURL = "https://m:6443/$(reboot)" }, "", []string{"APIServerURL"}},
		{"API URL with space", func(e *NetworkEnvironment) { e.APIServerURL = "https://m:6443/a b" }, "", []string{"APIServerURL"}},
		{"API URL with newline", func(e *NetworkEnvironment) { e.APIServerURL = "https://m:6443\nEVIL=1" }, "", []string{"APIServerURL"}},
		{"API URL with user", func(e *NetworkEnvironment) { e.APIServerURL = "https://u:p@m:6443" }, "", []string{"APIServerURL"}},
		{"pod CIDR with host bits", func(e *NetworkEnvironment) { e.PodCIDR = netip.MustParsePrefix("172.19.0.1/16") }, "", []string{"PodCIDR"}},
		{"cluster DNS zero", func(e *NetworkEnvironment) { e.ClusterDNS = netip.IPv4Unspecified() }, "", []string{"ClusterDNS"}},
		{"cluster domain bad", func(e *NetworkEnvironment) { e.ClusterDomain = "cluster.local." }, "", []string{"ClusterDomain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := labEnv()
			e.EtcdEndpoints = append([]string(nil), e.EtcdEndpoints...)
			tc.change(&e)
			f, err := e.File()
			if tc.fields != nil {
				if err == nil {
					t.Fatalf("File accepted %+v:\n%s", e, f.Content)
				}
				var got []string
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("%v is not a *FieldError", e)
					}
					got = append(got, strings.TrimPrefix(fe.Field, "NetworkEnvironment."))
				}
				if strings.Join(got, " ") != strings.Join(tc.fields, " ") {
					t.Fatalf("errors name %v, want %v:\n%v", got, tc.fields, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Path != "/etc/network-environment" || f.Mode != 0o644 {
				t.Errorf("path %s mode %#o", f.Path, f.Mode)
			}
			if string(f.Content) != tc.want {
				t.Errorf("content:\n%s\nwant:\n%s", f.Content, tc.want)
			}
			checkWithShell(t, f.Content)
		})
	}
}

// checkWithShell sources the file with the host's POSIX shell in an empty
// environment: it must set exactly its KEY=VALUE pairs, unchanged (what
// systemd's EnvironmentFile= reads too, for values that need no quoting).
func checkWithShell(t *testing.T, content []byte) {
	t.Helper()
	sh := needTool(t, "sh")
	p := writeTemp(t, "network-environment", content)
	out, err := exec.Command("env", "-i", sh, "-c", `set -eu; set -a; . "$1"; set +a; env`, "sh", p).CombinedOutput()
	if err != nil {
		t.Fatalf("sh: %v\n%s", err, out)
	}
	var want, got []string
	for _, l := range strings.Split(strings.TrimSpace(string(content)), "\n") {
		if !strings.HasPrefix(l, "#") {
			want = append(want, l)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, _, _ := strings.Cut(l, "="); k == "PWD" || k == "SHLVL" || k == "_" || k == "OLDPWD" {
			continue
		}
		got = append(got, l)
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the shell reads\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
