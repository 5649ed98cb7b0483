package pki

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// Machine is one machine of the lab as the PKI sees it.
type Machine struct {
	Name string     // host name and Kubernetes node name
	IP   netip.Addr // its address on the lab segment
	// ControlPlane machines run etcd, kube-apiserver, kube-controller-manager
	// and kube-scheduler.
	ControlPlane bool
}

// Spec is what the lab's identities are made from.
type Spec struct {
	LabName       string       // the kubeconfigs' cluster name
	ClusterDomain string       // "cluster.local"
	ServiceCIDR   netip.Prefix // its first address (10.100.0.1 in 10.100.0.0/24) is a SAN of kube-apiserver
	Machines      []Machine
	// AuthorizedKeys, if set, are the keys that may log in to the machines;
	// no lab SSH key pair is made then.
	AuthorizedKeys []string
	// Now is the issuance time of new certificates (tests pass a fixed one;
	// the CLI time.Now()).
	Now time.Time
}

// APIServerPort is the port kube-apiserver listens on.
const APIServerPort = 6443

var (
	dnsLabelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	domainRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
)

// validate gathers every problem of the spec.
func (s *Spec) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("pki: "+format, args...)) }
	if s.LabName == "" {
		bad("the lab has no name")
	}
	if !domainRe.MatchString(s.ClusterDomain) {
		bad("cluster domain %q is not a DNS name", s.ClusterDomain)
	}
	if !s.ServiceCIDR.IsValid() {
		bad("no service CIDR")
	} else if !s.ServiceCIDR.Masked().Addr().Next().IsValid() || !s.ServiceCIDR.Contains(s.ServiceCIDR.Masked().Addr().Next()) {
		bad("service CIDR %s has no first address for the kubernetes Service", s.ServiceCIDR)
	}
	if s.Now.IsZero() {
		bad("no issuance time (Spec.Now)")
	}
	if len(s.Machines) == 0 {
		bad("the lab has no machines")
	}
	names := map[string]bool{}
	ips := map[netip.Addr]string{}
	for i, m := range s.Machines {
		if !dnsLabelRe.MatchString(m.Name) {
			bad("machines[%d]: name %q is not a DNS label", i, m.Name)
		} else if names[m.Name] {
			bad("machines[%d]: name %q is given twice", i, m.Name)
		}
		names[m.Name] = true
		if !m.IP.IsValid() {
			bad("machine %q has no IP address", m.Name)
		} else if other, ok := ips[m.IP]; ok {
			bad("machines %q and %q have the same IP address %s", other, m.Name, m.IP)
		} else {
			ips[m.IP] = m.Name
		}
	}
	// A lab of plain machines has no control plane: its machines get no
	// Kubernetes files then (see MachineFiles).
	return errors.Join(errs...)
}

// master is the first control-plane machine: every kubeconfig names its
// kube-apiserver.
func (s *Spec) master() Machine {
	for _, m := range s.Machines {
		if m.ControlPlane {
			return m
		}
	}
	return Machine{}
}

func (s *Spec) machine(name string) (Machine, bool) {
	for _, m := range s.Machines {
		if m.Name == name {
			return m, true
		}
	}
	return Machine{}, false
}

// kubernetesServiceIP is the first address of the service range, the
// ClusterIP of the default/kubernetes Service.
func (s *Spec) kubernetesServiceIP() netip.Addr {
	return s.ServiceCIDR.Masked().Addr().Next()
}

// server is the URL of the master's kube-apiserver.
func (s *Spec) server() string {
	m := s.master()
	if !m.IP.IsValid() {
		return "" // no control plane
	}
	return "https://" + netip.AddrPortFrom(m.IP, APIServerPort).String()
}
