// Package publish carries baked role images to and from OCI registries:
// the last stage of the pipeline and the first on a hypervisor host that
// has no recipes' inputs.
//
// Where it sits in the pipeline:
//
//	internal/bake → OUT/ROLE.qcow2, ROLE.manifest.json, ROLE.spdx.json
//	    → publish.Push → a registry → publish.Pull → OUT/ on another host → labbake up
//
// Two formats, both plain OCI image manifests built here byte for byte, so
// the same outputs give the same manifest digest on any machine, however
// often they are published:
//
//   - [FormatArtifact], an OCI artifact (image-spec 1.1): artifactType
//     [ArtifactType], the empty config, and as layers the qcow2
//     ([MediaTypeDisk]), the manifest JSON ([MediaTypeManifest]) and the
//     SBOM ([MediaTypeSBOM]) when there is one, each titled with its file
//     name (org.opencontainers.image.title) as ORAS does.
//   - [FormatContainerDisk], a KubeVirt containerDisk: a linux/amd64 image
//     of one uncompressed tar layer holding /disk/ROLE.qcow2 owned by
//     107:107 (the qemu user of KubeVirt's launcher), mode 0440, and
//     /labbake/ROLE.manifest.json (and .spdx.json) for Pull to verify;
//     KubeVirt reads only /disk.
//
// Both carry the annotations [AnnotationLab], [AnnotationRole],
// [AnnotationPlanDigest], [AnnotationRecipeDigest], [AnnotationVersion] and
// org.opencontainers.image.created (the bake's epoch), the containerDisk's
// also as config labels.
//
// Push writes blobs and the manifest through containers/image's docker
// transport (ImageDestination, not copy.Image, which would re-encode an
// artifact's layers): blobs the repository already holds are not sent
// again, and the manifest is put under every tag given. Pull reads through
// the same transport, so registries.conf mirrors and the signature policy
// (policy.json) apply; it verifies the manifest digest (against the
// reference's when it names one), every blob's digest and size, and the
// qcow2's sha256 and size against the manifest JSON inside, in a temporary
// directory of the target, renaming into place only once all is verified.
//
// Credentials and TLS follow skopeo: --creds, --authfile (default
// $REGISTRY_AUTH_FILE, else containers/image's chain ending in
// ~/.docker/config.json), --cert-dir, and --tls-verify=false; see [Options].
package publish
