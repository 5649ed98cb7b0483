// Package bake is labbake's one orchestration path: the verbs of the CLI
// hand it a lab and role names and it runs the pipeline, recipe → plan →
// tree → raw disk → qcow2 and SBOM (and the seeds of the machines).
//
// Prepare renders each role's recipe once and pins every input from
// outside the lab dir of every role, reporting the problems of all roles
// together before anything is written. A Batch then gives the roles'
// complete plans (Plans: labbake plan, fetch, lock, bundle export, cache
// prune) or bakes them (Build): the tree is assembled in a work dir under
// the cache dir, reading each of the lab's tar files once (hashed on the
// way for the plan), the plan completed, and the root's size checked, all
// before the output dir is touched; the tree's dpkg database is read
// (builders/dpkg) before the disk is written; then ROLE.qcow2, its SBOM
// ROLE.spdx.json (internal/sbom) and ROLE.manifest.json, which names the
// SBOM with its sha256, are written under temporary names and renamed
// together under the role's lock (OUT/.ROLE.lock, never followed if it is
// a symlink): the SBOM first, the image last.
//
// After each build OUT/SHA256SUMS is rewritten under its own lock, in the
// format sha256sum -c reads: every role's image (the sha256 its manifest
// gives), manifest and SBOM present in OUT. Seeds, the PKI, the kubeconfig
// and the kit are deliberately not listed: they are the machine's own
// secrets and settings, never published. The stages themselves live in
// internal/recipe, internal/plan and builders/.
//
// Between builds it keeps, in the cache dir, what an edit of the recipe's
// own files leaves alone: the tree of the base and layers (snapshot.go),
// the lower root file system (builders/disk's stage cache) and, where OUT's
// file system shares extents, each image's block map, so that a rebuilt
// image clones what it shares with the one it replaces (reuse.go). The
// bytes are those of a build without any of them.
package bake
