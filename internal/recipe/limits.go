package recipe

import (
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// What a lab may ask for. Each bound is far above what a lab needs and low
// enough that loading stays quick and its memory proportional to what is
// built: a recipe is parsed into a YAML tree several times its size, so
// its size and entries are bounded before anything is decoded.
const (
	// maxYAMLFile bounds lab.yaml and each recipe file, as read and as
	// rendered.
	maxYAMLFile = 4 << 20
	// maxEntries bounds each list of a recipe (files, artifacts, units,
	// overlays, layers, images, each list of checks) once extends are
	// merged.
	maxEntries = 10000
	// maxInline bounds the bytes a recipe holds in memory for the image:
	// files' content, unit files and rendered unit and overlay templates.
	maxInline = 64 << 20
)

// readLabFile reads rel, a file of the lab dir named by the lab's layout
// (recipes/NAME.yaml), inside the lab dir and at most maxYAMLFile bytes.
func (l *Lab) readLabFile(rel string) ([]byte, error) {
	p, err := l.inLab(rel)
	if err != nil {
		return nil, err
	}
	return readCapped(p, maxYAMLFile)
}

// readCapped reads the file p when it holds at most limit bytes.
func readCapped(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %s, the most labbake reads", FormatSize(limit))
	}
	return b, nil
}

// checkEntries bounds the lists of a merged recipe to maxEntries items
// each, before any is decoded.
func (d *decoder) checkEntries(top fields) bool {
	good := true
	check := func(n *yaml.Node, field string) {
		if n != nil && n.Kind == yaml.SequenceNode && len(n.Content) > maxEntries {
			d.errorf(n, field, "%d entries: a recipe may hold at most %d (extends included)", len(n.Content), maxEntries)
			good = false
		}
	}
	for _, key := range []string{"layers", "artifacts", "files", "units", "overlays", "images"} {
		check(top.get(key), key)
	}
	if c := top.get("checks"); c != nil && c.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(c.Content); i += 2 {
			check(c.Content[i+1], "checks."+c.Content[i].Value)
		}
	}
	return good
}

// inline counts the bytes a recipe holds in memory for the image (files'
// content, unit files, rendered templates) against maxInline.
type inline struct {
	total int64
	over  bool
}

// add counts n more bytes of the field at node at; past maxInline it
// reports the problem there, once, and returns false.
func (in *inline) add(d *decoder, at *yaml.Node, field string, n int) bool {
	in.total += int64(n)
	if in.total <= maxInline {
		return true
	}
	if !in.over {
		in.over = true
		d.errorf(at, field, "the recipe's inline content (files, units and templates) passes %s here: put large files in an overlay", FormatSize(maxInline))
	}
	return false
}
