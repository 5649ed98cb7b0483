//go:build !linux

package atomicfile

// renameNoReplace renames old to new unless new exists.
func renameNoReplace(old, new string) error { return linkNoReplace(old, new) }
