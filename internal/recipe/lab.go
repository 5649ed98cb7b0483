package recipe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/internal/ipv4"
)

// Lab is a lab.yaml: the machines of the lab, their network and the values
// recipes are rendered with.
type Lab struct {
	Dir     string // absolute lab dir
	Name    string
	Epoch   *int64 // `epoch:` (unix seconds) for reproducible timestamps when SOURCE_DATE_EPOCH is unset
	Vars    map[string]any
	Network Network
	Nodes   []Node
	SSH     SSH
	// SeedFiles are the files of the lab dir the machines' seeds carry
	// (seed_files: secrets, never in an image).
	SeedFiles []SeedFile
	Digest    string // "sha256:<hex>" of the rendered lab.yaml bytes (and values files, when given)
}

// Network is the lab's host bridge and the cluster's address ranges. The
// defaults are those of the classic hand-made lab.
type Network struct {
	Bridge      string // bridge, default "qemu0"
	CIDR        string // cidr, default "172.18.0.0/16"
	Gateway     string // gateway, default "172.18.0.1"
	PodCIDR     string // pod_cidr, default "172.19.0.0/16"
	ServiceCIDR string // service_cidr, default "10.100.0.0/24"
	ClusterDNS  string // cluster_dns, default "10.100.0.10"
	Domain      string // domain, default "cluster.local"
	// Mode is how `labbake up` connects the machines: auto (the default),
	// bridge or user.
	Mode string
	// DNSDomain is the machines' own DNS domain (their FQDNs), default
	// NAME.internal.
	DNSDomain string
	// CNI is the pod network the lab's recipes set up: calico (the
	// default) or bridge (the CNI reference bridge plugin with a pod
	// subnet per node and routes between nodes, no add-on pods).
	CNI string
	// NodePorts (node_ports) are Kubernetes NodePorts (30000-32767) that
	// `labbake up` in user mode forwards from a port of the host's
	// 127.0.0.1 to the control plane, as it does ssh and the API.
	NodePorts []int
}

// NodePortMin and NodePortMax are the NodePort range of the lab's API
// server (--service-node-port-range).
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// CNIs are the values network.cni may take.
var CNIs = []string{"calico", "bridge"}

// Node is one machine of the lab.
type Node struct {
	Name, Role, IP string
	CPUs           int    // cpus, default 2
	Memory         string // memory as written, default "2GiB"
	MemoryBytes    int64  // Memory in bytes
	Pos            Pos
}

var (
	labNameRe = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
	// hostNameRe is a DNS label: node names become host names, roles file
	// names (recipes/ROLE.yaml).
	hostNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	bridgeRe   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	domainRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
)

// Load is LoadContext without a context.
func Load(dir string) (*Lab, error) { return LoadContext(context.Background(), dir) }

// LoadContext reads DIR/lab.yaml, renders it as a template with no data
// (sprig functions only), lays the values files over it in order (see
// values.go) and decodes the result strictly. Problems are returned as an
// ErrorList; when ctx is done first, its error.
func LoadContext(ctx context.Context, dir string, values ...string) (*Lab, error) {
	const name = "lab.yaml"
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, ErrorList{{Pos: Pos{File: name}, Msg: fmt.Sprintf("lab directory %s: %v", dir, err)}}
	}
	src, err := readCapped(filepath.Join(abs, name), maxYAMLFile)
	if err != nil {
		msg := fmt.Sprintf("reading lab: %v", err)
		if errors.Is(err, fs.ErrNotExist) {
			msg = fmt.Sprintf("no lab.yaml in %s", abs)
		}
		return nil, ErrorList{{Pos: Pos{File: name}, Msg: msg}}
	}
	out, terr := render(ctx, name, src, map[string]any{}, maxYAMLFile)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("loading the lab: %w", ctx.Err())
	}
	if terr != nil {
		return nil, ErrorList{terr}
	}
	d := newDecoder(ctx)
	root, ok := d.parse(name, src, out)
	if !ok {
		return nil, d.err()
	}
	root, digest, ok := d.applyValues(root, out, values)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("loading the lab: %w", ctx.Err())
	}
	if !ok {
		return nil, d.err()
	}
	lab := &Lab{Dir: abs, Digest: digest, Vars: map[string]any{}}
	d.decodeLab(root, lab)
	if err := d.err(); err != nil {
		return nil, err
	}
	return lab, nil
}

func (d *decoder) decodeLab(root *yaml.Node, lab *Lab) {
	f, ok := d.mapping(root, "", "name", "epoch", "vars", "network", "nodes", "ssh", "seed_files")
	if !ok {
		return
	}
	if n := f.get("name"); n == nil {
		d.errorf(f.at("name"), "name", "the lab needs a name")
	} else if s, ok := d.str(n, "name"); ok {
		if !labNameRe.MatchString(s) {
			d.errorf(n, "name", "name %q may hold only a-z, 0-9 and '-' (1 to 63 characters)", s)
		}
		lab.Name = s
	}
	if n := f.get("epoch"); n != nil {
		if v, ok := d.integer(n, "epoch"); ok {
			if v < 0 {
				d.errorf(n, "epoch", "epoch must be seconds since 1970-01-01 UTC, not negative")
			}
			lab.Epoch = &v
		}
	}
	if n := f.get("vars"); n != nil {
		if n.Kind != yaml.MappingNode {
			d.errorf(n, "vars", "expected a mapping, got %s", describe(n))
		} else if v, ok := d.toAny(n, "vars"); ok {
			lab.Vars = v.(map[string]any)
		}
	}
	nf, nok := d.mapping(f.vals["network"], "network", "bridge", "cidr", "gateway", "pod_cidr", "service_cidr", "cluster_dns", "domain", "mode", "dns_domain", "cni", "node_ports")
	if nf.node == nil {
		nf.node = root
	}
	lab.Network = d.decodeNetwork(nf, nok)
	lab.Network.NodePorts = d.decodeNodePorts(nf.get("node_ports"))
	d.decodeIdentity(nf, nok, lab)
	d.decodeNodes(f, lab)
	lab.SSH = d.decodeSSH(lab, f.get("ssh"))
	d.decodeSeedFiles(f.get("seed_files"), lab)
}

// decodeNodePorts reads network.node_ports: NodePorts, each once.
func (d *decoder) decodeNodePorts(n *yaml.Node) []int {
	items, ok := d.sequence(n, "network.node_ports")
	if !ok {
		return nil
	}
	var ports []int
	seen := map[int64]*yaml.Node{}
	for i, item := range items {
		path := indexPath("network.node_ports", i)
		v, ok := d.integer(item, path)
		switch {
		case !ok:
		case v < NodePortMin || v > NodePortMax:
			d.errorf(item, path, "%d is not a NodePort (%d-%d)", v, NodePortMin, NodePortMax)
		case seen[v] != nil:
			d.errorf(item, path, "NodePort %d is listed twice (first at line %d)", v, d.pos(seen[v]).Line)
		default:
			seen[v] = item
			ports = append(ports, int(v))
		}
	}
	return ports
}

// netField is one network value, with the node to report problems at.
type netField struct {
	key, value string
	at         *yaml.Node
	given      bool // set in lab.yaml, not the default
}

func (d *decoder) netField(f fields, key, def string) netField {
	nf := netField{key: key, value: def, at: f.at(key)}
	if n := f.get(key); n != nil {
		if s, ok := d.str(n, "network."+key); ok {
			nf.value, nf.at, nf.given = s, n, true
		} else {
			nf.value = ""
		}
	}
	return nf
}

func (nf netField) what() string {
	if nf.given {
		return nf.value
	}
	return nf.value + " (the default)"
}

func (d *decoder) decodeNetwork(f fields, ok bool) Network {
	bridge := d.netField(f, "bridge", "qemu0")
	cidr := d.netField(f, "cidr", "172.18.0.0/16")
	gateway := d.netField(f, "gateway", "172.18.0.1")
	pod := d.netField(f, "pod_cidr", "172.19.0.0/16")
	svc := d.netField(f, "service_cidr", "10.100.0.0/24")
	dns := d.netField(f, "cluster_dns", "10.100.0.10")
	domain := d.netField(f, "domain", "cluster.local")
	cni := d.netField(f, "cni", CNIs[0])
	net := Network{
		Bridge: bridge.value, CIDR: cidr.value, Gateway: gateway.value, PodCIDR: pod.value,
		ServiceCIDR: svc.value, ClusterDNS: dns.value, Domain: domain.value, CNI: cni.value,
	}
	if !ok {
		return net
	}
	if cni.value != "" && !slices.Contains(CNIs, cni.value) {
		d.errorf(cni.at, "network.cni", "cni %q: want one of %s", cni.value, strings.Join(CNIs, ", "))
	}
	if bridge.value != "" && !bridgeRe.MatchString(bridge.value) {
		d.errorf(bridge.at, "network.bridge", "bridge %q is not an interface name (1 to 15 of A-Z, a-z, 0-9, '_', '.', '-')", bridge.value)
	}
	if domain.value != "" && !domainRe.MatchString(domain.value) {
		d.errorf(domain.at, "network.domain", "domain %q is not a DNS name", domain.value)
	}
	prefix := func(nf netField) (netip.Prefix, bool) {
		if nf.value == "" {
			return netip.Prefix{}, false
		}
		p, err := netip.ParsePrefix(nf.value)
		if err != nil {
			d.errorf(nf.at, "network."+nf.key, "%s is not a CIDR like 172.18.0.0/16", nf.value)
			return p, false
		}
		if p.Masked() != p {
			d.errorf(nf.at, "network."+nf.key, "%s has host bits set: use %s", nf.value, p.Masked())
			return p, false
		}
		return p, true
	}
	addr := func(nf netField) (netip.Addr, bool) {
		if nf.value == "" {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(nf.value)
		if err != nil {
			d.errorf(nf.at, "network."+nf.key, "%s is not an IP address", nf.value)
			return a, false
		}
		return a, true
	}
	cidrP, cidrOK := prefix(cidr)
	podP, podOK := prefix(pod)
	svcP, svcOK := prefix(svc)
	gw, gwOK := addr(gateway)
	dnsA, dnsOK := addr(dns)
	if cidrOK && gwOK && (!cidrP.Contains(gw) || gw == cidrP.Addr()) {
		d.errorf(gateway.at, "network.gateway", "gateway %s is not a host address of cidr %s", gateway.what(), cidr.value)
	}
	if svcOK && dnsOK && !svcP.Contains(dnsA) {
		d.errorf(dns.at, "network.cluster_dns", "cluster_dns %s is outside service_cidr %s", dns.what(), svc.value)
	}
	if cidrOK && podOK && cidrP.Overlaps(podP) {
		d.errorf(pod.at, "network.pod_cidr", "pod_cidr %s overlaps cidr %s", pod.what(), cidr.value)
	}
	if cidrOK && svcOK && cidrP.Overlaps(svcP) {
		d.errorf(svc.at, "network.service_cidr", "service_cidr %s overlaps cidr %s", svc.what(), cidr.value)
	}
	if podOK && svcOK && podP.Overlaps(svcP) {
		d.errorf(svc.at, "network.service_cidr", "service_cidr %s overlaps pod_cidr %s", svc.what(), pod.value)
	}
	return net
}

func (d *decoder) decodeNodes(f fields, lab *Lab) {
	items, ok := d.sequence(f.get("nodes"), "nodes")
	if !ok {
		return
	}
	if len(items) == 0 {
		d.errorf(f.at("nodes"), "nodes", "the lab needs at least one node")
		return
	}
	cidr, cidrErr := netip.ParsePrefix(lab.Network.CIDR)
	gw, _ := netip.ParseAddr(lab.Network.Gateway)
	names := map[string]*yaml.Node{}
	ips := map[netip.Addr]*yaml.Node{}
	for i, item := range items {
		path := indexPath("nodes", i)
		nf, ok := d.mapping(item, path, "name", "role", "ip", "cpus", "memory")
		if !ok {
			continue
		}
		if isNull(item) {
			d.errorf(item, path, "expected a mapping, got null")
			continue
		}
		node := Node{CPUs: 2, Memory: "2GiB", MemoryBytes: 2 * GiB, Pos: d.pos(item)}
		if n := nf.get("name"); n == nil {
			d.errorf(nf.at("name"), path+".name", "name is required")
		} else if s, ok := d.str(n, path+".name"); ok {
			node.Name = s
			if !hostNameRe.MatchString(s) {
				d.errorf(n, path+".name", "name %q is not a host name (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')", s)
			} else if first := names[s]; first != nil {
				d.errorf(n, path+".name", "duplicate node name %q (first at line %d)", s, d.pos(first).Line)
			} else {
				names[s] = n
			}
		}
		if n := nf.get("role"); n == nil {
			d.errorf(nf.at("role"), path+".role", "role is required")
		} else if s, ok := d.str(n, path+".role"); ok {
			node.Role = s
			if !hostNameRe.MatchString(s) {
				d.errorf(n, path+".role", "role %q may hold only a-z, 0-9 and '-' (at most 63)", s)
			}
		}
		if n := nf.get("ip"); n == nil {
			d.errorf(nf.at("ip"), path+".ip", "ip is required")
		} else if s, ok := d.str(n, path+".ip"); ok {
			node.IP = s
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil:
				d.errorf(n, path+".ip", "%q is not an IP address", s)
			case cidrErr == nil && (!cidr.Contains(a) || a == cidr.Addr()):
				d.errorf(n, path+".ip", "ip %s is not a host address of network.cidr %s", s, lab.Network.CIDR)
			case cidrErr == nil && a == ipv4.Broadcast(cidr):
				d.errorf(n, path+".ip", "ip %s is the broadcast address of network.cidr %s", s, lab.Network.CIDR)
			case a == gw:
				d.errorf(n, path+".ip", "ip %s is the gateway's", s)
			case ips[a] != nil:
				d.errorf(n, path+".ip", "ip %s is already used by the node at line %d", s, d.pos(ips[a]).Line)
			default:
				ips[a] = n
			}
		}
		if n := nf.get("cpus"); n != nil {
			if v, ok := d.integer(n, path+".cpus"); ok {
				if v < 1 || v > 1024 {
					d.errorf(n, path+".cpus", "cpus must be from 1 to 1024, got %d", v)
				}
				node.CPUs = int(v)
			}
		}
		if n := nf.get("memory"); n != nil {
			if s, ok := d.str(n, path+".memory"); ok {
				node.Memory = s
				b, err := ParseSize(s)
				switch {
				case err != nil:
					d.errorf(n, path+".memory", "%v", err)
				case b == 0 || b%MiB != 0:
					d.errorf(n, path+".memory", "memory %s must be a positive multiple of 1MiB", s)
				default:
					node.MemoryBytes = b
				}
			}
		}
		lab.Nodes = append(lab.Nodes, node)
	}
	d.checkMACs(names, lab.Nodes)
}

// Roles returns the distinct roles of the lab's nodes in order of first
// appearance.
func (l *Lab) Roles() []string {
	var roles []string
	seen := map[string]bool{}
	for _, n := range l.Nodes {
		if !seen[n.Role] {
			seen[n.Role] = true
			roles = append(roles, n.Role)
		}
	}
	return roles
}

// templateData is what recipes, unit and overlay templates are rendered
// with, spelt as in YAML: .lab.name, .lab.network.cidr, .lab.nodes, .vars,
// .role and .nodes (the nodes of this role). It is built anew for each
// template so that one cannot change what the next one sees.
func (l *Lab) templateData(role string) map[string]any {
	all := []any{}
	mine := []any{}
	for _, n := range l.Nodes {
		all = append(all, nodeData(n))
		if n.Role == role {
			mine = append(mine, nodeData(n))
		}
	}
	return map[string]any{
		"lab": map[string]any{
			"name": l.Name,
			"network": map[string]any{
				"bridge":       l.Network.Bridge,
				"cidr":         l.Network.CIDR,
				"gateway":      l.Network.Gateway,
				"pod_cidr":     l.Network.PodCIDR,
				"service_cidr": l.Network.ServiceCIDR,
				"cluster_dns":  l.Network.ClusterDNS,
				"domain":       l.Network.Domain,
				"mode":         l.Network.Mode,
				"dns_domain":   l.Network.DNSDomain,
				"cni":          l.Network.CNI,
			},
			"nodes": all,
		},
		"vars":  copyValue(l.Vars),
		"role":  role,
		"nodes": mine,
	}
}

func nodeData(n Node) map[string]any {
	return map[string]any{"name": n.Name, "role": n.Role, "ip": n.IP, "cpus": n.CPUs, "memory": n.Memory, "mac": n.MAC()}
}

// copyValue deep-copies the maps and lists of a decoded YAML value.
func copyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = copyValue(x)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = copyValue(x)
		}
		return s
	default:
		return v
	}
}
