package recipe

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"

	"go.yaml.in/yaml/v3"
)

// Values files (`labbake --values FILE`, repeatable) change a lab without
// editing its lab.yaml: each is a YAML document shaped like lab.yaml,
// rendered as a template the same way (sprig functions, no data), and laid
// over it in order, as Helm's `-f` lays values over a chart's:
//
//   - a mapping merges into the mapping it meets, key by key, recursively
//     (so `vars: {kubernetes: {version: v1.37.3}}` changes one version and
//     keeps every other var);
//   - anything else replaces what it meets: a scalar, and a list as a whole
//     (`nodes:` in a values file is the whole list of nodes);
//   - null removes the key (`vars: {ceph: null}` leaves ceph out).
//
// The result is decoded as strictly as lab.yaml alone: an unknown key or a
// bad value that came from a values file is reported at its place in that
// file (FILE:LINE:COL, FILE as given on the command line).

// applyValues lays the values files over root, the parsed lab.yaml whose
// rendered text is labOut, and returns the merged tree and the lab's
// digest over lab.yaml and every values file. ok is false when a values
// file could not be read or parsed; the problems are in d.
func (d *decoder) applyValues(root *yaml.Node, labOut []byte, files []string) (*yaml.Node, string, bool) {
	h := sha256.New()
	h.Write(labOut)
	ok := true
	for _, name := range files {
		out, over, fine := d.parseValues(name)
		if !fine {
			ok = false
			continue
		}
		// Each document's length before it, so that moving bytes from
		// one file to the next changes the digest.
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(out)))
		h.Write([]byte("\x00labbake values\x00"))
		h.Write(n[:])
		h.Write(out)
		if over.Kind != yaml.MappingNode {
			d.errorf(over, "", "a values file is a mapping shaped like lab.yaml, got %s", describe(over))
			ok = false
			continue
		}
		root = d.mergeValues(root, over)
	}
	if len(files) == 0 {
		sum := sha256.Sum256(labOut)
		return root, fmt.Sprintf("sha256:%x", sum), ok
	}
	return root, fmt.Sprintf("sha256:%x", h.Sum(nil)), ok
}

// parseValues reads, renders and parses one values file.
func (d *decoder) parseValues(name string) ([]byte, *yaml.Node, bool) {
	src, err := readCapped(name, maxYAMLFile)
	if err != nil {
		msg := fmt.Sprintf("reading values: %v", err)
		if errors.Is(err, fs.ErrNotExist) {
			msg = "no such values file"
		}
		d.add(Pos{File: name}, "", "%s", msg)
		return nil, nil, false
	}
	out, terr := render(d.ctx, name, src, map[string]any{}, maxYAMLFile)
	if terr != nil {
		d.addErr(terr)
		return nil, nil, false
	}
	root, ok := d.parse(name, src, out)
	return out, root, ok
}

// mergeValues lays over on base: mappings merge key by key (base's keys
// first, in their order, then over's new ones), a null in over removes the
// key, anything else in over replaces base's value. New mapping nodes are
// recorded with base's file; every node taken from over keeps its own, so
// problems are reported where they were written. Neither tree is changed.
func (d *decoder) mergeValues(base, over *yaml.Node) *yaml.Node {
	if base == nil || base.Kind != yaml.MappingNode || over.Kind != yaml.MappingNode {
		return over
	}
	m := *base
	m.Content = nil
	d.files[&m] = d.files[base]
	idx := map[string]int{}
	for i := 0; i+1 < len(over.Content); i += 2 {
		if k := over.Content[i]; k.Kind == yaml.ScalarNode {
			idx[k.Value] = i // duplicate keys are already reported by parse
		}
	}
	used := map[int]bool{}
	for i := 0; i+1 < len(base.Content); i += 2 {
		k, v := base.Content[i], base.Content[i+1]
		j, found := -1, false
		if k.Kind == yaml.ScalarNode {
			j, found = idx[k.Value]
		}
		if !found {
			m.Content = append(m.Content, k, v)
			continue
		}
		used[j] = true
		ok, ov := over.Content[j], over.Content[j+1]
		if isNull(ov) {
			continue
		}
		m.Content = append(m.Content, ok, d.mergeValues(v, ov))
	}
	for i := 0; i+1 < len(over.Content); i += 2 {
		if !used[i] && !isNull(over.Content[i+1]) {
			m.Content = append(m.Content, over.Content[i], over.Content[i+1])
		}
	}
	return &m
}
