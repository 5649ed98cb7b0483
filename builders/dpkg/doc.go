// Package dpkg reads the dpkg database of an image's root file system.
//
// Where it sits in the pipeline:
//
//	Recipe inputs → builders/tree (assembled Tree) → dpkg.Installed → internal/sbom (ROLE.spdx.json)
//	                                               → dpkg.InfoDir   → builders/space, builders/secrets
//
// It reads the assembled [tree.Tree], never a mounted or extracted image:
// [Installed] parses /var/lib/dpkg/status, the list of the packages dpkg
// installed with their versions, architectures and source packages, and
// [InfoDir] names the directory of the packages' file lists
// (/var/lib/dpkg/info/*.list) that builders/space and builders/secrets read
// to tell which package a file belongs to. A tree without a dpkg database
// (a base that is not Debian's, a bare layer) has no packages; that is not
// an error.
//
// [ReadParagraphs] is the one reader of Debian's control-file format
// (paragraphs of "Field: value" lines separated by blank lines) in labbake:
// the status file is one, and so is an archive's Packages index, which
// test/upstream reads with it.
package dpkg
