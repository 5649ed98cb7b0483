package recipe

import (
	"go.yaml.in/yaml/v3"
)

// splitExtends returns the extends value of a recipe's root mapping and a
// copy of the mapping without it.
func splitExtends(root *yaml.Node) (ext, rest *yaml.Node) {
	c := *root
	c.Content = nil
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "extends" {
			if ext == nil {
				ext = v
			}
			continue
		}
		c.Content = append(c.Content, k, v)
	}
	if isNull(ext) {
		ext = nil
	}
	return ext, &c
}

// merge lays child over parent: mappings merge key by key (parent's keys
// first, in order), lists append (parent's items first), anything else is
// replaced by the child's. At the top, base is replaced as a whole: it is
// a choice of tar or dir, not a set of fields. New nodes are recorded with
// the child's file, so positions stay right.
func (d *decoder) merge(parent, child *yaml.Node, top bool) *yaml.Node {
	switch {
	case parent == nil:
		return child
	case child == nil:
		return parent
	case parent.Kind == yaml.MappingNode && child.Kind == yaml.MappingNode:
		m := *child
		m.Content = nil
		d.files[&m] = d.files[child]
		idx := map[string]int{}
		for i := 0; i+1 < len(child.Content); i += 2 {
			if k := child.Content[i]; k.Kind == yaml.ScalarNode {
				if _, dup := idx[k.Value]; !dup {
					idx[k.Value] = i
				}
			}
		}
		used := map[int]bool{}
		for i := 0; i+1 < len(parent.Content); i += 2 {
			k, v := parent.Content[i], parent.Content[i+1]
			j, ok := -1, false
			if k.Kind == yaml.ScalarNode {
				j, ok = idx[k.Value]
			}
			if !ok || used[j] {
				m.Content = append(m.Content, k, v)
				continue
			}
			used[j] = true
			ck, cv := child.Content[j], child.Content[j+1]
			if top && k.Value == "base" {
				m.Content = append(m.Content, ck, cv)
			} else {
				m.Content = append(m.Content, ck, d.merge(v, cv, false))
			}
		}
		for i := 0; i+1 < len(child.Content); i += 2 {
			if !used[i] {
				m.Content = append(m.Content, child.Content[i], child.Content[i+1])
			}
		}
		return &m
	case parent.Kind == yaml.SequenceNode && child.Kind == yaml.SequenceNode:
		s := *child
		s.Content = append(append([]*yaml.Node{}, parent.Content...), child.Content...)
		d.files[&s] = d.files[child]
		return &s
	default:
		return child
	}
}
