// Package oci is a source kind: OCI images as bases, layers and artifact
// sources, pinned by manifest digest, blobs in the cache.
//
// A recipe names an image by any reference containers/image understands
// (docker://registry/repo:tag or @sha256:…, oci:DIR:TAG, oci-archive:FILE,
// docker-archive:FILE, containers-storage: where built in). [Source.Pull]
// checks the reference against the signature policy (policy.json), resolves
// it to the manifest of one platform (amd64/linux unless told otherwise,
// chosen from a manifest list or OCI index), honours registries.conf mirrors,
// and copies the manifest, the config and every layer blob into the
// content-addressed cache ([Store]). Once pinned, an image is served from the
// cache alone: with [Source.Offline] set, Pull reads the pinned manifest from
// the cache and never touches a transport.
//
// [Source.OpenLayer] gives a layer as an uncompressed tar stream for the tree
// builder, which applies the layers with OCI whiteout semantics;
// [Source.ExtractPath] looks a path up in the flattened image (upper layers
// win, whiteouts and opaque directories honoured, symlinks followed inside the
// image) for artifacts taken out of an image.
//
// Build with CGO_ENABLED=0 and the tag containers_image_openpgp (signature
// checks without gpgme); labbake also sets exclude_graphdriver_btrfs,
// exclude_graphdriver_devicemapper and containers_image_storage_stub. The
// stub leaves the containers-storage: transport out, and Pull says so
// ([ErrUnsupportedTransport]). Without the stub that transport builds and
// works with cgo disabled too, but containers/storage then re-executes the
// program for its helpers, so main must call reexec.Init() from
// go.podman.io/storage/pkg/reexec first; its layers are stored uncompressed
// and the image is pinned by its manifest rewritten to name them.
package oci
