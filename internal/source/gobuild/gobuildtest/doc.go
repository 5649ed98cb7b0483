// Package gobuildtest serves small Go modules from a module proxy that a
// test writes itself, so that the tests of go inputs (internal/source/gobuild,
// internal/resolve, internal/cli) build real programs with the real go
// command without reaching the network. It is used by tests only.
package gobuildtest
