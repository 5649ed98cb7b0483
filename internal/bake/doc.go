// Package bake runs the pipeline for one role: recipe → plan → tree →
// raw disk → qcow2, and writes ROLE.qcow2 and ROLE.manifest.json under
// temporary names that are renamed only when complete. It owns the build's
// scratch dir (under the cache dir) and the per-role lock in the output dir;
// the stages themselves live in internal/recipe, internal/plan and builders/.
package bake
