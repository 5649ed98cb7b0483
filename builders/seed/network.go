package seed

import "net"

// networkConfig is a cloud-init network config, version 2, limited to the
// keys cloud-init documents for its own (non-netplan) renderers plus
// "optional", which netplan honours and the others ignore.
type networkConfig struct {
	Version   int       `yaml:"version"`
	Ethernets ethernets `yaml:"ethernets"`
}

type ethernets struct {
	Lab    *ethernet `yaml:"lab0"`
	Uplink *ethernet `yaml:"uplink0,omitempty"`
}

type ethernet struct {
	Match          match          `yaml:"match"`
	SetName        qstring        `yaml:"set-name,omitempty"`
	DHCP4          bool           `yaml:"dhcp4"`
	DHCP6          bool           `yaml:"dhcp6"`
	DHCP4Overrides *dhcpOverrides `yaml:"dhcp4-overrides,omitempty"`
	Addresses      []qstring      `yaml:"addresses,omitempty"`
	Routes         []route        `yaml:"routes,omitempty"`
	Nameservers    *nameservers   `yaml:"nameservers,omitempty"`
	Optional       bool           `yaml:"optional,omitempty"`
}

type match struct {
	MACAddress qstring `yaml:"macaddress"`
}

type dhcpOverrides struct {
	RouteMetric int `yaml:"route-metric"`
}

type route struct {
	To     qstring `yaml:"to"`
	Via    qstring `yaml:"via"`
	Metric int     `yaml:"metric"`
}

type nameservers struct {
	Addresses []qstring `yaml:"addresses,omitempty"`
	Search    []qstring `yaml:"search,omitempty"`
}

func networkConfigOf(m Machine) networkConfig {
	lab := &ethernet{
		Match:     match{MACAddress: q(canonicalMAC(m.LabMAC))},
		SetName:   LabInterface,
		Addresses: []qstring{q(m.Address.String())},
		Routes:    []route{{To: "0.0.0.0/0", Via: q(m.Gateway.String()), Metric: LabRouteMetric}},
	}
	if len(m.Nameservers) > 0 || len(m.SearchDomains) > 0 {
		ns := &nameservers{Search: qs(m.SearchDomains)}
		for _, a := range m.Nameservers {
			ns.Addresses = append(ns.Addresses, q(a.String()))
		}
		lab.Nameservers = ns
	}
	nc := networkConfig{Version: 2, Ethernets: ethernets{Lab: lab}}
	if m.UplinkMAC != "" {
		nc.Ethernets.Uplink = &ethernet{
			// No set-name: cloud-init renames every NIC with one before
			// it writes any configuration, and a rename of a NIC that is
			// not there (the uplink exists only under labbake up in user
			// mode) fails the whole network configuration. Matched by MAC
			// it keeps its kernel name.
			Match:          match{MACAddress: q(canonicalMAC(m.UplinkMAC))},
			DHCP4:          true,
			DHCP4Overrides: &dhcpOverrides{RouteMetric: UplinkRouteMetric},
			Optional:       true,
		}
	}
	return nc
}

// canonicalMAC is a valid MAC as cloud-init wants it: lower case, colons.
func canonicalMAC(s string) string {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return s
	}
	return hw.String()
}
