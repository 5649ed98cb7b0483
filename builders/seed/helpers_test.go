package seed

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/labbake/labbake/internal/macaddr"
)

// key reads a key made by ssh-keygen for these tests (testdata/keys).
func key(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hostKey(t testing.TB, typ, name string) HostKey {
	return HostKey{Type: typ, Private: key(t, name), Public: key(t, name+".pub")}
}

// sampleMaster is the original lab's master, in bridge mode only.
func sampleMaster(t testing.TB) Machine {
	env, err := NetworkEnvironment{
		NodeName:      "master",
		NodeIP:        netip.MustParseAddr("172.18.100.187"),
		MasterIP:      netip.MustParseAddr("172.18.100.187"),
		EtcdEndpoints: []string{"https://172.18.100.187:2379"},
		APIServerURL:  "https://172.18.100.187:6443",
		PodCIDR:       netip.MustParsePrefix("172.19.0.0/16"),
		ServiceCIDR:   netip.MustParsePrefix("10.100.0.0/24"),
		ClusterDNS:    netip.MustParseAddr("10.100.0.10"),
		ClusterDomain: "cluster.local",
	}.File()
	if err != nil {
		t.Fatal(err)
	}
	return Machine{
		Name:           "master",
		FQDN:           "master.mylab.internal",
		LabMAC:         macaddr.String("master"),
		Address:        netip.MustParsePrefix("172.18.100.187/16"),
		Gateway:        netip.MustParseAddr("172.18.0.1"),
		Nameservers:    []netip.Addr{netip.MustParseAddr("172.18.0.1")},
		SearchDomains:  []string{"mylab.internal"},
		AuthorizedKeys: []string{key(t, "lab_user_ed25519.pub")},
		HostKeys:       []HostKey{hostKey(t, "ed25519", "master_host_ed25519")},
		Files: []File{
			env,
			{Path: "/etc/kubernetes/pki/ca.crt", Content: []byte("-----BEGIN CERTIFICATE-----\nnot a real certificate\n-----END CERTIFICATE-----\n"), Mode: 0o644},
			{Path: "/etc/kubernetes/pki/apiserver.key", Content: []byte("-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n"), Mode: 0o600},
		},
	}
}

// sampleNode is node-one with an uplink NIC (user-mode networking), three
// host key types and two nameservers and search domains.
func sampleNode(t testing.TB) Machine {
	env, err := NetworkEnvironment{
		NodeName:      "node-one",
		NodeIP:        netip.MustParseAddr("172.18.100.122"),
		MasterIP:      netip.MustParseAddr("172.18.100.187"),
		EtcdEndpoints: []string{"https://172.18.100.187:2379"},
		APIServerURL:  "https://172.18.100.187:6443",
		PodCIDR:       netip.MustParsePrefix("172.19.0.0/16"),
		ServiceCIDR:   netip.MustParsePrefix("10.100.0.0/24"),
		ClusterDNS:    netip.MustParseAddr("10.100.0.10"),
		ClusterDomain: "cluster.local",
	}.File()
	if err != nil {
		t.Fatal(err)
	}
	return Machine{
		Name:           "node-one",
		FQDN:           "node-one.mylab.internal",
		LabMAC:         macaddr.String("node-one"),
		Address:        netip.MustParsePrefix("172.18.100.122/16"),
		Gateway:        netip.MustParseAddr("172.18.0.1"),
		Nameservers:    []netip.Addr{netip.MustParseAddr("172.18.0.1"), netip.MustParseAddr("10.100.0.10")},
		SearchDomains:  []string{"mylab.internal", "cluster.local"},
		UplinkMAC:      "52:54:00:12:34:56",
		AuthorizedKeys: []string{key(t, "lab_user_ed25519.pub"), key(t, "master_host_ed25519.pub")},
		HostKeys: []HostKey{
			hostKey(t, "rsa", "node_host_rsa"),
			hostKey(t, "ed25519", "node_host_ed25519"),
			hostKey(t, "ecdsa", "node_host_ecdsa"),
		},
		Files: []File{
			env,
			{Path: "/etc/kubernetes/kubelet.kubeconfig", Content: []byte("apiVersion: v1\nkind: Config\n"), Mode: 0o600},
			{Path: "/usr/local/bin/lab-hello", Content: []byte("#!/bin/sh\necho hello\n"), Mode: 0o755},
			{Path: "/var/lib/lab/empty", Content: nil, Mode: 0o640},
		},
	}
}

// needTool skips the test when a host tool is missing, or fails it when
// LABBAKE_REQUIRE_TOOLS is set (as in CI).
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s not installed: %v", name, err)
	}
	return p
}

// missing skips the test for want of something on the host, or fails it
// when LABBAKE_REQUIRE_TOOLS is set.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
		t.Fatalf(format+" (LABBAKE_REQUIRE_TOOLS is set)", args...)
	}
	t.Skipf(format, args...)
}
