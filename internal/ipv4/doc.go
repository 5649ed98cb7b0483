// Package ipv4 holds the IPv4 address arithmetic the lab's network needs
// in two places that must agree: the recipe decoder, which refuses a node
// address that is not a host address of network.cidr (internal/recipe),
// and the host kit, which hands dnsmasq the addresses left over
// (builders/kit).
package ipv4
