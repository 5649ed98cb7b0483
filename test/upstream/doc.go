// Package upstream stands in for the downloads labbake fetches from upstream
// (dl.k8s.io, GitHub releases, container registries) when only a Go module
// proxy and a Debian mirror are reachable. It sits beside the pipeline, not in
// it: tests and developers use it to produce real inputs for `labbake lock`
// and `labbake build` through --mirror, registries.conf and values files.
//
// It takes runc and the CNI plugins from Debian's packages (Debian,
// FetchDebian), and stands in for Calico and Headlamp, which cannot be built
// here, with one small program (StandIn, CalicoImages, HeadlampImage,
// CalicoManifest). Output.Values writes a values file that points the
// shipped lab at all of it.
//
// It builds the real programs from the Go module proxy — Kubernetes,
// containerd, crictl, etcd and CoreDNS — each in a throw-away Go module that
// requires the upstream module at a pinned version, with CGO disabled,
// -trimpath, an empty build ID and the version stamped the way the project's
// own release scripts stamp it, so that the same inputs give the same bytes
// in any directory (Build). It lays the binaries out in upstream's URL layout
// with the checksum files each project publishes (Layout), serves that tree
// over HTTP on 127.0.0.1 (Serve), assembles OCI images from built binaries
// without a container engine (WriteImage) and pushes them to a local
// docker-registry (StartRegistry, Registry.Push).
//
// The command test/upstream/cmd/labbake-upstream does all of it in one run.
package upstream
