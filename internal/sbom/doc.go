// Package sbom writes the software bill of materials of a role's image,
// OUT/ROLE.spdx.json: an SPDX 2.3 document in JSON, made with
// github.com/spdx/tools-golang's types and JSON writer.
//
// Where it sits in the pipeline:
//
//	recipe → plan → builders/tree (assembled Tree) → builders/dpkg.Installed ─┐
//	                                                → raw disk → qcow2 ───────┴→ sbom.Marshal → ROLE.spdx.json, beside ROLE.manifest.json
//
// internal/bake reads the tree's dpkg status file after the tree is
// assembled and before the disk is written, and hands this package what the
// manifest states: the plan's inputs and the preloaded container images,
// and the qcow2's sha256 once it is written. The document is committed with
// the image and its manifest, and the manifest names it with its sha256
// ("sbom"); see internal/bake.
//
// The document describes one package, the image (its qcow2 file and sha256),
// which CONTAINS one package for each Debian package in the image's dpkg
// database (its version, its source package, a purl
// pkg:deb/debian/NAME@VERSION?arch=ARCH), each input of the plan (the base
// among them: its kind, name, source and digest) and each container image
// preloaded into containerd (its reference and manifest digest).
//
// The same build gives the same bytes: the creation time is the plan's
// epoch, the namespace a URN made of the lab, the role and the plan's
// digest (urn:labbake:LAB:ROLE:sha256:…, naming no host), SPDX IDs are
// derived from the packages' names, and the packages are sorted by them.
package sbom
