// Package published is OUT/ROLE.published.json: where `labbake publish`
// put a role's image and under which digests, written by the publisher,
// read by what deploys a published image (labbake kit --kubevirt names each
// role's containerDisk by the digest recorded here).
//
// Where it sits in the pipeline:
//
//	OUT/ROLE.qcow2 + OUT/ROLE.manifest.json → publish → registry, OUT/ROLE.published.json (Write)
//	OUT/ROLE.published.json (Read) → kit --kubevirt → OUT/kit/kubevirt/
//
// A Record names the plan digest and the qcow2's sha256 of the image it
// was made from (the manifest's plan_digest and output.sha256), so a
// reader can tell that the role was rebuilt since (Record.Stale), and up
// to two images: the artifact (the qcow2 as an OCI artifact) and the
// containerDisk (the qcow2 in a container image, as KubeVirt boots it),
// each by repository, digest and tags. Write checks a record and writes it
// atomically (internal/atomicfile), mode 0644: it holds nothing secret.
// Read refuses a file that is not a valid record of the role asked for;
// a missing one is an error that wraps fs.ErrNotExist.
package published
