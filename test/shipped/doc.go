// Package shipped tests the lab shipped at the repository root (lab.yaml,
// recipes/, units/, overlays/) at the first stage of the pipeline, where
// labbake renders it: every unit, configuration file and add-on manifest
// the master and node images get is compared with golden files under
// testdata/golden (refreshed with go test ./test/shipped -update), the
// Kubernetes configuration files and manifests are decoded strictly
// against the Kubernetes API types, and the references between them
// (binaries the units run, images the manifests name) are checked. It
// bakes nothing: building the images needs the upstream inputs (see
// test/integration and the cluster test for what builds).
package shipped
