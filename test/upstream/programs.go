package upstream

import (
	"embed"
	"fmt"
	"time"
)

// programs holds the sources of the small programs built into test images.
//
//go:embed programs/pause/main.go programs/hostname/main.go programs/standin/main.go
var programs embed.FS

// ProgramEpoch dates the local programs' images (SOURCE_DATE_EPOCH=0).
var ProgramEpoch = time.Unix(0, 0).UTC()

// Program is a local program (pause or hostname) as a Component: its
// embedded source is a module of its own, built like the upstream ones.
func Program(name, version string) (Component, error) {
	src, err := programs.ReadFile("programs/" + name + "/main.go")
	if err != nil {
		return Component{}, fmt.Errorf("no program %q: %w", name, err)
	}
	module := "labbake.local/programs/" + name
	return Component{
		Name:     name,
		Module:   module,
		Version:  version,
		Source:   map[string][]byte{"main.go": src},
		LDFlags:  func(ModuleInfo) []string { return []string{"-s", "-w"} },
		Binaries: []Binary{{Name: name, Package: module}},
	}, nil
}

// StandIn is the stand-in program (programs/standin) as the Component
// called name (calico, headlamp), its version stamped into main.version:
// one binary, standin, that acts by the name it is installed under.
func StandIn(name, version string) (Component, error) {
	c, err := Program("standin", version)
	if err != nil {
		return Component{}, err
	}
	c.Name = name
	c.LDFlags = func(ModuleInfo) []string { return []string{"-s", "-w", "-X", "main.version=" + version} }
	return c, nil
}

// CalicoImages are stand-ins for Calico's three images of the manifest
// install, under the repositories quay.io serves them from
// (calico/node, calico/cni, calico/kube-controllers), each with the stand-in
// program at the paths the manifest runs: /bin/calico-node;
// /opt/cni/bin/install; /usr/bin/kube-controllers and
// /usr/bin/check-status. They run as root, as Calico's do.
func CalicoImages(r *Result) ([]ImageSpec, error) {
	bin, err := r.file("standin")
	if err != nil {
		return nil, err
	}
	v := r.Component.Version
	file := func(p string) ImageFile { return ImageFile{Path: p, Src: bin.Path, Mode: 0o755} }
	return []ImageSpec{
		{Registry: "quay.io", Repository: "calico/node", Tag: v, Files: []ImageFile{file("/bin/calico-node")},
			Entrypoint: []string{"/bin/calico-node"}, Created: ProgramEpoch},
		{Registry: "quay.io", Repository: "calico/cni", Tag: v, Files: []ImageFile{file("/opt/cni/bin/install")},
			Entrypoint: []string{"/opt/cni/bin/install"}, Created: ProgramEpoch},
		{Registry: "quay.io", Repository: "calico/kube-controllers", Tag: v,
			Files:      []ImageFile{file("/usr/bin/check-status"), file("/usr/bin/kube-controllers")},
			Entrypoint: []string{"/usr/bin/kube-controllers"}, Created: ProgramEpoch},
	}, nil
}

// HeadlampImage is a stand-in for Headlamp's image
// (headlamp-k8s/headlamp:TAG, as ghcr.io names it): the stand-in program as
// /headlamp/headlamp-server answering HTTP on 4466, user 100:101 like
// upstream's.
func HeadlampImage(r *Result) (ImageSpec, error) {
	bin, err := r.file("standin")
	if err != nil {
		return ImageSpec{}, err
	}
	return ImageSpec{
		Registry:     "ghcr.io",
		Repository:   "headlamp-k8s/headlamp",
		Tag:          r.Component.Version,
		Files:        []ImageFile{{Path: "/headlamp/headlamp-server", Src: bin.Path, Mode: 0o755}},
		Entrypoint:   []string{"/headlamp/headlamp-server"},
		User:         "100:101",
		ExposedPorts: []string{"4466/tcp"},
		Created:      ProgramEpoch,
	}, nil
}

// CoreDNSImage is CoreDNS's image as its Dockerfile makes it: /coredns with
// cap_net_bind_service, user 65532:65532, ports 53/tcp and 53/udp, at the
// path registry.k8s.io serves it from (coredns/coredns:vX.Y.Z).
func CoreDNSImage(r *Result) (ImageSpec, error) {
	bin, err := r.file("coredns")
	if err != nil {
		return ImageSpec{}, err
	}
	return ImageSpec{
		Registry:     "registry.k8s.io",
		Repository:   "coredns/coredns",
		Tag:          r.Component.Version,
		Files:        []ImageFile{{Path: "/coredns", Src: bin.Path, Mode: 0o755, Capabilities: []uint{CapNetBindService}}},
		Entrypoint:   []string{"/coredns"},
		User:         "65532:65532",
		ExposedPorts: []string{"53/tcp", "53/udp"},
		Created:      r.Module.Time,
	}, nil
}

// PauseImage is the pause image (pause:TAG, as registry.k8s.io names it)
// around the stand-in program, user 65535:65535 like upstream's.
func PauseImage(r *Result) (ImageSpec, error) {
	bin, err := r.file("pause")
	if err != nil {
		return ImageSpec{}, err
	}
	return ImageSpec{
		Registry:   "registry.k8s.io",
		Repository: "pause",
		Tag:        r.Component.Version,
		Files:      []ImageFile{{Path: "/pause", Src: bin.Path, Mode: 0o755}},
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
		Created:    ProgramEpoch,
	}, nil
}

// HostnameImage is the cluster test's web server (labbake/hostname:TAG),
// listening on 8080 as user 65532:65532.
func HostnameImage(r *Result) (ImageSpec, error) {
	bin, err := r.file("hostname")
	if err != nil {
		return ImageSpec{}, err
	}
	return ImageSpec{
		Registry:     "registry.k8s.io",
		Repository:   "labbake/hostname",
		Tag:          r.Component.Version,
		Files:        []ImageFile{{Path: "/hostname", Src: bin.Path, Mode: 0o755}},
		Entrypoint:   []string{"/hostname"},
		User:         "65532:65532",
		ExposedPorts: []string{"8080/tcp"},
		Created:      ProgramEpoch,
	}, nil
}

// file is the built binary called name.
func (r *Result) file(name string) (File, error) {
	for _, f := range r.Files {
		if f.Name == name {
			return f, nil
		}
	}
	return File{}, fmt.Errorf("%s %s built no %s", r.Component.Name, r.Component.Version, name)
}
