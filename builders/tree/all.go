package tree

import "iter"

// All yields every entry, the root included, in no particular order, without
// copying or sorting them: a cheap look at the whole tree for reports (see
// builders/space). The entries share their Xattrs and Content with the tree:
// read them only, and do not change the tree while iterating. Use Entries for
// sorted copies.
func (t *Tree) All() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		for _, n := range t.nodes {
			if !yield(n.e) {
				return
			}
		}
	}
}
