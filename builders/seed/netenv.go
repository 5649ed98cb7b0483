package seed

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// NetworkEnvironmentPath is where the lab's units read a machine's network
// facts from (EnvironmentFile=).
const NetworkEnvironmentPath = "/etc/network-environment"

// NetworkEnvironment is the content of a machine's /etc/network-environment,
// the file the original lab wrote by hand on each node and its units read.
type NetworkEnvironment struct {
	NodeName      string
	NodeIP        netip.Addr
	MasterIP      netip.Addr
	EtcdEndpoints []string // https://IP:2379 of every etcd member
	APIServerURL  string   // https://MASTER:6443
	PodCIDR       netip.Prefix
	ServiceCIDR   netip.Prefix
	ClusterDNS    netip.Addr
	ClusterDomain string
}

// File renders e as KEY=VALUE lines, mode 0644. Every value is checked to be
// what its key says and to need no quoting, so the file means the same to
// systemd (EnvironmentFile=) and to a POSIX shell (". FILE"). The keys:
// NODE_NAME, NODE_IP, DEFAULT_IPV4 (the node address again, a name the
// original lab used), MASTER_IP, ETCD_ENDPOINTS (comma separated),
// KUBE_API_URL, POD_CIDR, SERVICE_CIDR, CLUSTER_DNS, CLUSTER_DOMAIN.
func (e NetworkEnvironment) File() (File, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: "NetworkEnvironment." + field, Problem: fmt.Sprintf(format, args...)})
	}
	if p := labelProblem(e.NodeName); p != "" {
		bad("NodeName", "%q is not a host name: %s", e.NodeName, p)
	}
	// A lab without a control plane has no cluster to name: then the
	// file has only the machine's own values and the networks.
	cluster := e.MasterIP.IsValid() || len(e.EtcdEndpoints) > 0 || e.APIServerURL != ""
	addrs := []struct {
		field string
		addr  netip.Addr
	}{{"NodeIP", e.NodeIP}, {"ClusterDNS", e.ClusterDNS}}
	if cluster {
		addrs = append(addrs, struct {
			field string
			addr  netip.Addr
		}{"MasterIP", e.MasterIP})
	}
	for _, a := range addrs {
		if !a.addr.IsValid() || a.addr.Zone() != "" || a.addr.IsUnspecified() || a.addr.IsMulticast() {
			bad(a.field, "%q is not a unicast address", a.addr.String())
		}
	}
	if cluster && len(e.EtcdEndpoints) == 0 {
		bad("EtcdEndpoints", "none")
	}
	for i, u := range e.EtcdEndpoints {
		if p := httpsURLProblem(u, false); p != "" {
			bad(fmt.Sprintf("EtcdEndpoints[%d]", i), "%q: %s", u, p)
		}
	}
	if p := httpsURLProblem(e.APIServerURL, true); cluster && p != "" {
		bad("APIServerURL", "%q: %s", e.APIServerURL, p)
	}
	for _, c := range []struct {
		field string
		p     netip.Prefix
	}{{"PodCIDR", e.PodCIDR}, {"ServiceCIDR", e.ServiceCIDR}} {
		switch {
		case !c.p.IsValid():
			bad(c.field, "missing or invalid")
		case c.p != c.p.Masked():
			bad(c.field, "%s has host bits set (the network is %s)", c.p, c.p.Masked())
		}
	}
	if p := domainProblem(e.ClusterDomain); p != "" {
		bad("ClusterDomain", "%q is not a domain name: %s", e.ClusterDomain, p)
	}
	if err := errors.Join(errs...); err != nil {
		return File{}, err
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# %s of %s, written by labbake.\n", NetworkEnvironmentPath, e.NodeName)
	kvs := [][2]string{
		{"NODE_NAME", e.NodeName},
		{"NODE_IP", e.NodeIP.String()},
		{"DEFAULT_IPV4", e.NodeIP.String()},
	}
	if cluster {
		kvs = append(kvs, [][2]string{
			{"MASTER_IP", e.MasterIP.String()},
			{"ETCD_ENDPOINTS", strings.Join(e.EtcdEndpoints, ",")},
			{"KUBE_API_URL", e.APIServerURL},
		}...)
	}
	for _, kv := range append(kvs, [][2]string{
		{"POD_CIDR", e.PodCIDR.String()},
		{"SERVICE_CIDR", e.ServiceCIDR.String()},
		{"CLUSTER_DNS", e.ClusterDNS.String()},
		{"CLUSTER_DOMAIN", e.ClusterDomain},
	}...) {
		if !plainValue(kv[1]) {
			// Unreachable after the checks above; kept so no value can ever
			// need quoting.
			return File{}, &FieldError{Field: "NetworkEnvironment", Problem: fmt.Sprintf("%s=%q would need quoting", kv[0], kv[1])}
		}
		b.WriteString(kv[0] + "=" + kv[1] + "\n")
	}
	return File{Path: NetworkEnvironmentPath, Content: []byte(b.String()), Mode: 0o644}, nil
}

// httpsURLProblem accepts https://HOST:PORT (and a path when withPath).
func httpsURLProblem(s string, withPath bool) string {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return "missing"
	case err != nil:
		return err.Error()
	case u.Scheme != "https":
		return "not an https URL"
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "has user info, a query or a fragment"
	case u.Hostname() == "" || u.Port() == "":
		return "needs a host and a port"
	case !withPath && u.Path != "":
		return "has a path"
	case hostProblem(u.Hostname()) != "":
		return "host " + hostProblem(u.Hostname())
	case portProblem(u.Port()) != "":
		return "port " + portProblem(u.Port())
	case !plainValue(s):
		return "has characters that would need quoting"
	}
	return ""
}

// hostProblem accepts an IP address or a lower-case domain name.
func hostProblem(h string) string {
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return "has a zone"
		}
		return ""
	}
	if p := domainProblem(h); p != "" {
		return fmt.Sprintf("%q is neither an IP address nor a domain name: %s", h, p)
	}
	return ""
}

func portProblem(p string) string {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
		return fmt.Sprintf("%q is not a port number", p)
	}
	return ""
}

// plainValue reports whether s means the same unquoted to systemd's
// EnvironmentFile parser and to a POSIX shell.
func plainValue(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-._:/,@%+[]", r):
		default:
			return false
		}
	}
	return true
}
