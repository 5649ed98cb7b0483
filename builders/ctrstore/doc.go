// Package ctrstore writes containerd's own on-disk state for container
// images preloaded at bake time, so that the image's containerd (2.x) and
// its CRI plugin find them at first boot and no pod needs a registry.
//
// Where it sits in the pipeline:
//
//	Recipe images → internal/resolve (pinned, blobs in the cache) → Tree (base, layers, artifacts, then ctrstore) → builders/disk
//
// Under the containerd root (default /var/lib/containerd) it adds:
//
//   - io.containerd.content.v1.content/blobs/sha256/HEX: every blob of every
//     image (manifest, config, layers as the registry served them), mode
//     0444 as containerd's local content store leaves them, taken from the
//     cache without copying;
//   - io.containerd.metadata.v1.bolt/meta.db: containerd's bolt metadata
//     database, schema v1 at the db version containerd 2.x writes (4),
//     holding in one namespace (default k8s.io) the image records the CRI
//     plugin makes when it pulls (the tag, NAME@sha256:MANIFEST and the
//     image ID sha256:CONFIG, labelled io.cri-containerd.image=managed, and
//     io.cri-containerd.pinned=pinned when asked), and a content record for
//     every blob with the labels a pull leaves (garbage-collection
//     references from the manifest to its config and layers, and
//     containerd.io/distribution.source.HOST=REPO).
//
// Snapshots are not written: the CRI plugin unpacks an image whose snapshot
// is missing when it creates the first container from it.
//
// The database is written by bbolt in one transaction, keys inserted in
// sorted order, with a fixed page size and every time set to the bake's
// epoch: the same images give the same bytes.
package ctrstore
