package upstream

import (
	"fmt"
	"strings"
	"time"
)

// Versions pins the upstream releases built from the Go module proxy.
type Versions struct {
	Kubernetes string // k8s.io/kubernetes, e.g. v1.37.2
	Containerd string // github.com/containerd/containerd/v2, e.g. v2.4.2
	Crictl     string // sigs.k8s.io/cri-tools, e.g. v1.37.0
	Etcd       string // go.etcd.io/etcd/{server,etcdctl,etcdutl}/v3, e.g. v3.6.17
	CoreDNS    string // github.com/coredns/coredns, e.g. v1.14.6
	Pause      string // the pause image's tag, e.g. 3.10.2 (a stand-in program)
	// Runc and CNIPlugins are the release tags runc and the CNI plugins
	// are served under; the binaries come from Debian's packages (runc,
	// containernetworking-plugins), whatever version the suite carries.
	Runc       string // e.g. v1.5.3
	CNIPlugins string // e.g. v1.10.0
	// Calico and Headlamp are the tags of stand-ins: neither can be built
	// from the module proxy here.
	Calico   string // e.g. v3.31.3
	Headlamp string // e.g. v0.43.0
}

// DefaultVersions are the newest releases on the Go module proxy of the lines
// the lab runs (Kubernetes 1.37, containerd 2.x, etcd 3.6), with CoreDNS and
// the pause tag that kubeadm 1.37 pins (cmd/kubeadm/app/constants), and the
// shipped lab's tags for runc, the CNI plugins, Calico and Headlamp.
func DefaultVersions() Versions {
	return Versions{
		Kubernetes: "v1.37.2",
		Containerd: "v2.4.2",
		Crictl:     "v1.37.0",
		Etcd:       "v3.6.17",
		CoreDNS:    "v1.14.6",
		Pause:      "3.10.2",
		Runc:       "v1.5.3",
		CNIPlugins: "v1.10.0",
		Calico:     "v3.31.3",
		Headlamp:   "v0.43.0",
	}
}

// Component is one upstream project built in its own throw-away module.
type Component struct {
	Name    string   // kubernetes, containerd, crictl, etcd, coredns, or a local program
	Module  string   // the upstream module, required at Version
	Version string   // a tag on the module proxy
	Also    []string // further modules of the same release, required at Version
	// Staging replaces each module that Module's go.mod replaces with a
	// directory under ./staging/ (k8s.io/api, k8s.io/client-go, …) by its
	// published v0.MINOR.PATCH, which is how they reach the module proxy.
	Staging bool
	// LDFlags gives the linker flags that stamp the version, from the
	// module's proxy metadata (its commit time); the builder adds -buildid=.
	LDFlags  func(m ModuleInfo) []string
	Binaries []Binary
	// Source, for a local program, is its main package's files by name; the
	// throw-away module is then the program itself and Module is its path.
	Source map[string][]byte
}

// Binary is one main package of a Component and the file it builds to.
type Binary struct {
	Name    string   // output file name, e.g. kube-apiserver
	Package string   // import path of the main package
	Tags    []string // build tags, as the project's release build sets them
}

// ModuleInfo is what the module proxy says about a required module.
type ModuleInfo struct {
	Path      string
	Version   string
	Time      time.Time // the commit time the proxy records for Version
	Dir       string    // extracted source in GOMODCACHE (read-only)
	GoMod     string    // path of its go.mod file in GOMODCACHE
	GoVersion string    // its go directive
}

// Kubernetes builds the control plane, the node binaries and kubectl the way
// hack/lib/golang.sh builds a release: static, -trimpath, -s -w, the tags
// selinux,notest,grpcnotrace, and the version stamped into both
// k8s.io/component-base/version and k8s.io/client-go/pkg/version as
// hack/lib/version.sh does. gitCommit and gitTreeState are left out, as
// upstream does when KUBE_GIT_COMMIT is unset: the module proxy does not
// record the commit. buildDate is the commit time (upstream uses
// SOURCE_DATE_EPOCH, the commit time, for reproducible release builds).
func Kubernetes(version string) (Component, error) {
	major, minor, err := majorMinor(version)
	if err != nil {
		return Component{}, fmt.Errorf("kubernetes: %w", err)
	}
	tags := []string{"selinux", "notest", "grpcnotrace"}
	c := Component{
		Name:    "kubernetes",
		Module:  "k8s.io/kubernetes",
		Version: version,
		Staging: true,
		LDFlags: func(m ModuleInfo) []string {
			var f []string
			for _, kv := range [][2]string{
				{"buildDate", m.Time.UTC().Format("2006-01-02T15:04:05Z")},
				{"gitVersion", version},
				{"gitMajor", major},
				{"gitMinor", minor},
			} {
				for _, pkg := range []string{"k8s.io/client-go/pkg/version", "k8s.io/component-base/version"} {
					f = append(f, "-X", pkg+"."+kv[0]+"="+kv[1])
				}
			}
			return append(f, "-s", "-w")
		},
	}
	for _, n := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
		c.Binaries = append(c.Binaries, Binary{Name: n, Package: "k8s.io/kubernetes/cmd/" + n, Tags: tags})
	}
	return c, nil
}

// Containerd builds containerd, its runc shim, ctr and containerd-stress (the
// four binaries of the release archive) as the Makefile's static release
// does: tags urfave_cli_no_docs osusergo netgo static_build (no_grpc for the
// shim), -s -w, and version.Version and version.Package stamped. The
// Makefile's VERSION is `git describe`, the tag itself for a release;
// version.Revision (the commit) is not known from the proxy and stays empty.
func Containerd(version string) Component {
	const pkg = "github.com/containerd/containerd/v2"
	tags := []string{"urfave_cli_no_docs", "osusergo", "netgo", "static_build"}
	c := Component{
		Name:    "containerd",
		Module:  pkg,
		Version: version,
		LDFlags: func(ModuleInfo) []string {
			return []string{"-X", pkg + "/version.Version=" + version, "-X", pkg + "/version.Package=" + pkg, "-s", "-w"}
		},
	}
	for _, n := range []string{"containerd", "containerd-shim-runc-v2", "containerd-stress", "ctr"} {
		t := tags
		if n == "containerd-shim-runc-v2" {
			t = append(append([]string(nil), tags...), "no_grpc")
		}
		c.Binaries = append(c.Binaries, Binary{Name: n, Package: pkg + "/cmd/" + n, Tags: t})
	}
	return c
}

// Crictl builds crictl as cri-tools' hack/release.sh does: CGO disabled, no
// tags, symbols kept, pkg/version.Version stamped with the tag.
func Crictl(version string) Component {
	return Component{
		Name:    "crictl",
		Module:  "sigs.k8s.io/cri-tools",
		Version: version,
		LDFlags: func(ModuleInfo) []string {
			return []string{"-X", "sigs.k8s.io/cri-tools/pkg/version.Version=" + version}
		},
		Binaries: []Binary{{Name: "crictl", Package: "sigs.k8s.io/cri-tools/cmd/crictl"}},
	}
}

// Etcd builds etcd, etcdctl and etcdutl as scripts/build-binary.sh does for
// a release: GO_LDFLAGS="-s -w" plus api/v3/version.GitSHA, which
// scripts/build_lib.sh sets to "GitNotFound" when there is no git checkout —
// the case here, as the proxy does not record the commit.
func Etcd(version string) Component {
	return Component{
		Name:    "etcd",
		Module:  "go.etcd.io/etcd/server/v3",
		Version: version,
		Also:    []string{"go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"},
		LDFlags: func(ModuleInfo) []string {
			return []string{"-s", "-w", "-X=go.etcd.io/etcd/api/v3/version.GitSHA=GitNotFound"}
		},
		Binaries: []Binary{
			{Name: "etcd", Package: "go.etcd.io/etcd/server/v3"},
			{Name: "etcdctl", Package: "go.etcd.io/etcd/etcdctl/v3"},
			{Name: "etcdutl", Package: "go.etcd.io/etcd/etcdutl/v3"},
		},
	}
}

// CoreDNS builds coredns as its Makefile does: CGO disabled, tag grpcnotrace,
// -s -w and coremain.GitCommit = `git describe --dirty --always`, which is the
// tag itself at a release.
func CoreDNS(version string) Component {
	return Component{
		Name:    "coredns",
		Module:  "github.com/coredns/coredns",
		Version: version,
		LDFlags: func(ModuleInfo) []string {
			return []string{"-s", "-w", "-X", "github.com/coredns/coredns/coremain.GitCommit=" + version}
		},
		Binaries: []Binary{{Name: "coredns", Package: "github.com/coredns/coredns", Tags: []string{"grpcnotrace"}}},
	}
}

// Components lists everything Versions pins, in build order (small first).
func Components(v Versions) ([]Component, error) {
	k, err := Kubernetes(v.Kubernetes)
	if err != nil {
		return nil, err
	}
	return []Component{Crictl(v.Crictl), CoreDNS(v.CoreDNS), Etcd(v.Etcd), Containerd(v.Containerd), k}, nil
}

// majorMinor splits vMAJOR.MINOR.PATCH into "MAJOR" and "MINOR", the way
// hack/lib/version.sh derives KUBE_GIT_MAJOR and KUBE_GIT_MINOR for a
// release tag.
func majorMinor(v string) (string, string, error) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if !strings.HasPrefix(v, "v") || len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", fmt.Errorf("version %q is not vMAJOR.MINOR.PATCH", v)
	}
	for _, p := range parts[:2] {
		for _, r := range p {
			if r < '0' || r > '9' {
				return "", "", fmt.Errorf("version %q is not vMAJOR.MINOR.PATCH", v)
			}
		}
	}
	return parts[0], parts[1], nil
}

// stagingVersion is the published version of a staging module for a
// Kubernetes release: v1.37.2 → v0.37.2, v1.38.0-rc.1 → v0.38.0-rc.1.
func stagingVersion(k8s string) (string, error) {
	if _, _, err := majorMinor(k8s); err != nil {
		return "", err
	}
	if !strings.HasPrefix(k8s, "v1.") {
		return "", fmt.Errorf("version %q: staging modules are published as v0.N.M only for Kubernetes v1.N.M", k8s)
	}
	return "v0." + strings.TrimPrefix(k8s, "v1."), nil
}
