// Package bake is labbake's one orchestration path: the verbs of the CLI
// hand it a lab and role names and it runs the pipeline, recipe → plan →
// tree → raw disk → qcow2 (and the seeds of the machines).
//
// Prepare renders each role's recipe once and pins every input from
// outside the lab dir of every role, reporting the problems of all roles
// together before anything is written. A Batch then gives the roles'
// complete plans (Plans: labbake plan, fetch, lock, bundle export, cache
// prune) or bakes them (Build): the tree is assembled in a work dir under
// the cache dir, reading each of the lab's tar files once (hashed on the
// way for the plan), the plan completed, and the root's size checked, all
// before the output dir is touched; then ROLE.qcow2 and ROLE.manifest.json
// are written under temporary names and renamed as a pair under the role's
// lock (OUT/.ROLE.lock, never followed if it is a symlink). The stages
// themselves live in internal/recipe, internal/plan and builders/.
package bake
