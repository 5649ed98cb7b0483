// Package ociimage assembles a container image from files, without a
// container engine or a registry: the one layer of an OCI image, its config
// and its manifest, written as content-addressed blobs.
//
// Where it sits in the pipeline:
//
//	Recipe images[].build.files → internal/resolve (pinned, in the cache) → a Tree of the files (internal/bake) → ociimage → the cache → builders/ctrstore
//
// The image is linux/amd64 with exactly one layer: an uncompressed tar
// (media type application/vnd.oci.image.layer.v1.tar) of every entry of
// the tree but its root, in path order, parents before their children,
// with the owners, modes and times the tree gives (the bake's epoch). The
// layer is not compressed so that its bytes depend on nothing but the
// files: no compressor whose output may change between Go releases. Its
// diff ID is therefore its digest. The config carries the runtime settings
// given (entrypoint, cmd, user, env, working dir, exposed ports, labels),
// the creation time (the tree's epoch) and one history entry; the
// manifest is an OCI image manifest. The same tree and settings give the
// same bytes, hence the same manifest digest, on any machine.
package ociimage
