// Package recipe is the first stage of labbake's pipeline: lab.yaml + recipes
// → Recipe. The plan stage (internal/plan) turns a Recipe into pinned inputs.
//
// A lab directory holds lab.yaml, recipes/ROLE.yaml, units/ and overlays/.
// Load reads lab.yaml into a Lab (nodes, network, vars); Lab.Recipe renders
// a role's recipe and the chain of recipes it extends, merges them and
// decodes the result into a Recipe whose host paths are absolute and whose
// unit and overlay templates are already rendered.
//
// Every YAML file is a Go text/template rendered with sprig's functions
// minus those that read the environment or the clock, draw random numbers
// or make keys (see funcMap), so rendering is deterministic. Decoding is
// strict (unknown keys are errors) and gathers every problem it finds into
// an ErrorList; each Error names FILE:LINE:COL of the template source, even
// when the template added or removed lines (see lineMap), and the field path
// such as files[2].mode.
package recipe
