// Package secrets keeps private keys out of labbake's images.
//
// Where it sits in the pipeline:
//
//	Recipe inputs → builders/tree (assembled Tree) → secrets.Scrub, secrets.Scan → builders/disk
//
// A role image is the same for every machine and every lab and may be
// published; everything secret reaches a machine through its own seed. Once
// the Tree is assembled, the bake calls [Scrub], which removes the keys a
// Debian base makes for itself when its packages are installed (SSH host
// keys, ssl-cert's snake-oil key and certificate, and the links that would
// point at them) and, when the image has sshd, installs a unit that makes
// host keys at boot on a machine that has none; then [Scan], which reads
// every regular file of the Tree and refuses the image (an [*Error]) when a
// file still holds private key material, naming each file, the build stage
// it came from (tree.Entry.Origin) and the Debian package that ships it.
// Files the recipe lists under secrets.allow are not reported.
//
// What counts as private key material is decided in detect.go: a PEM block
// whose label ends in PRIVATE KEY (or an OpenPGP private key block, or an
// SSH2 private key) with a body that decodes to the structure its label
// promises, the same PEM base64-encoded (kubeconfig client-key-data,
// Kubernetes Secret manifests), a PuTTY key file, or a small file that is a
// DER private key. A mention of "-----BEGIN PRIVATE KEY-----" in a script or
// a document without such a body is not.
package secrets
