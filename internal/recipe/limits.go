package recipe

import (
	"fmt"
	"io"
	"os"
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
	// overlays, layers, each list of checks) once extends are merged.
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
		return nil, fmt.Errorf("%s is larger than %s, the most labbake reads", p, FormatSize(limit))
	}
	return b, nil
}
