// Package plan is the second stage of the pipeline: it turns a Recipe from
// internal/recipe into a Plan, pure data in which every input (base, layers,
// units, overlays) is pinned by its sha256 digest and the build time (epoch)
// is fixed. The plan's own digest names the build: the UUIDs and GUIDs of
// the disk are derived from it, so two builds of one plan write the same
// bytes. `labbake plan ROLE --json` prints it.
package plan
