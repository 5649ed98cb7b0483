package bake

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/labbake/labbake/builders/iso9660"
	"github.com/labbake/labbake/builders/seed"
	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/macaddr"
	"github.com/labbake/labbake/internal/pki"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
)

// ControlPlaneRole is the role whose machines run etcd and the Kubernetes
// control plane.
const ControlPlaneRole = "master"

// SeedOptions are the settings of writing seeds.
type SeedOptions struct {
	OutDir string
	// SourceDateEpoch is $SOURCE_DATE_EPOCH ("" when unset): the dates in
	// the ISOs, as in the images.
	SourceDateEpoch string
	// Now is when new certificates are issued.
	Now    time.Time
	Logger *slog.Logger
}

func (o SeedOptions) logger() *slog.Logger { return orDiscard(o.Logger) }

// SeedResult is one machine's seed.
type SeedResult struct {
	Node       string
	Path       string
	InstanceID string
}

// Paths under OutDir.
const (
	PKIDir     = "pki"
	SeedDir    = "seed"
	KitDir     = "kit"
	Kubeconfig = "kubeconfig"
	KnownHosts = "kit/known_hosts"
)

// PKISpec maps the lab onto the PKI's machines.
func PKISpec(lab *recipe.Lab, now time.Time) (pki.Spec, error) {
	svc, err := netip.ParsePrefix(lab.Network.ServiceCIDR)
	if err != nil {
		return pki.Spec{}, fmt.Errorf("network.service_cidr: %w", err)
	}
	spec := pki.Spec{
		LabName:        lab.Name,
		ClusterDomain:  lab.Network.Domain,
		ServiceCIDR:    svc,
		AuthorizedKeys: lab.SSH.AuthorizedKeys,
		Now:            now,
	}
	for _, n := range lab.Nodes {
		ip, err := netip.ParseAddr(n.IP)
		if err != nil {
			return pki.Spec{}, fmt.Errorf("node %s: %w", n.Name, err)
		}
		spec.Machines = append(spec.Machines, pki.Machine{Name: n.Name, IP: ip, ControlPlane: n.Role == ControlPlaneRole})
	}
	return spec, nil
}

// EnsurePKI loads the lab's PKI from OUT/pki, making what is missing; the
// wait for another labbake holding it ends when ctx is done.
func EnsurePKI(ctx context.Context, lab *recipe.Lab, opts SeedOptions) (*pki.PKI, error) {
	spec, err := PKISpec(lab, opts.Now)
	if err != nil {
		return nil, &InputError{err}
	}
	if err := atomicfile.MkdirPrivate(opts.OutDir, 0o755); err != nil {
		return nil, err
	}
	p, err := pki.Ensure(filepath.Join(opts.OutDir, PKIDir), spec, pki.WithLogger(opts.logger()), pki.WithContext(ctx))
	if err != nil {
		var de *pki.DamageError
		if errors.As(err, &de) {
			return nil, &InputError{err}
		}
		return nil, err
	}
	return p, nil
}

// Seeds writes OUT/seed/NODE.iso for each of nodes (every node when
// empty), OUT/kubeconfig and OUT/kit/known_hosts, making or reusing the
// lab's PKI. The lab's seed_files are read first: a problem with one is a
// recipe.ErrorList at its entry and nothing is written. Every seed is
// rendered before any is written; each file is written atomically; seeds
// are 0600 (they hold private keys).
func Seeds(ctx context.Context, lab *recipe.Lab, nodes []string, opts SeedOptions) ([]SeedResult, error) {
	log := opts.logger()
	epoch, _, err := plan.Epoch(opts.SourceDateEpoch, lab)
	if err != nil {
		return nil, &InputError{err}
	}
	docs, p, err := renderSeeds(ctx, lab, nodes, opts)
	if err != nil {
		return nil, err
	}
	type rendered struct {
		name string
		iso  []byte
		id   string
	}
	seeds := make([]rendered, 0, len(docs))
	for _, d := range docs {
		var files []iso9660.File
		for _, f := range d.Seed.Files() {
			files = append(files, iso9660.File{Name: f.Name, Data: f.Data, Mode: 0o600})
		}
		img, err := iso9660.Image(files, iso9660.Options{VolumeID: "cidata", ModTime: time.Unix(epoch, 0).UTC()})
		if err != nil {
			return nil, fmt.Errorf("seed of %s: %w", d.Node, err)
		}
		seeds = append(seeds, rendered{d.Node, img, d.Seed.InstanceID})
	}
	dir := filepath.Join(opts.OutDir, SeedDir)
	if err := atomicfile.MkdirPrivate(dir, 0o700); err != nil {
		return nil, err
	}
	var out []SeedResult
	for _, s := range seeds {
		path := filepath.Join(dir, s.name+".iso")
		if err := atomicfile.WriteFile(path, s.iso, 0o600); err != nil {
			return nil, err
		}
		log.Info("seed written", "node", s.name, "path", path, "instance-id", s.id)
		out = append(out, SeedResult{Node: s.name, Path: path, InstanceID: s.id})
	}
	if err := writeAccess(lab, p, opts.OutDir); err != nil {
		return nil, err
	}
	return out, nil
}

// RenderedSeed is one machine's seed documents, rendered, not written.
type RenderedSeed struct {
	Node string
	Seed *seed.Seed
}

// RenderSeeds renders the seed documents of nodes (every node when empty),
// in their order, exactly as Seeds puts them on the ISOs, making or
// reusing the lab's PKI; it writes no seed. For what carries the seeds
// another way (the KubeVirt kit's Secrets).
func RenderSeeds(ctx context.Context, lab *recipe.Lab, nodes []string, opts SeedOptions) ([]RenderedSeed, error) {
	docs, _, err := renderSeeds(ctx, lab, nodes, opts)
	return docs, err
}

func renderSeeds(ctx context.Context, lab *recipe.Lab, nodes []string, opts SeedOptions) ([]RenderedSeed, *pki.PKI, error) {
	if len(nodes) == 0 {
		for _, n := range lab.Nodes {
			nodes = append(nodes, n.Name)
		}
	}
	for _, name := range nodes {
		if _, ok := lab.Node(name); !ok {
			return nil, nil, &InputError{fmt.Errorf("no node %q in lab.yaml", name)}
		}
	}
	extra, err := lab.ReadSeedFiles(nodes)
	if err != nil {
		return nil, nil, err
	}
	p, err := EnsurePKI(ctx, lab, opts)
	if err != nil {
		return nil, nil, err
	}
	out := make([]RenderedSeed, 0, len(nodes))
	for _, name := range nodes {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		n, _ := lab.Node(name)
		m, err := seedMachine(lab, n, p, extra[name])
		if err != nil {
			return nil, nil, err
		}
		s, err := seed.Render(m)
		if err != nil {
			return nil, nil, fmt.Errorf("seed of %s: %w", m.Name, err)
		}
		out = append(out, RenderedSeed{Node: m.Name, Seed: s})
	}
	return out, p, nil
}

// writeAccess writes what the host needs to reach the machines: the admin
// kubeconfig and known_hosts.
func writeAccess(lab *recipe.Lab, p *pki.PKI, out string) error {
	master := ""
	for _, n := range lab.Nodes {
		if n.Role == ControlPlaneRole {
			master = n.IP
			break
		}
	}
	if master != "" {
		kc, err := p.AdminKubeconfig("https://" + master + ":6443")
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(out, Kubeconfig), kc, 0o600); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(out, KitDir), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", KitDir, err)
	}
	return atomicfile.WriteFile(filepath.Join(out, KnownHosts), p.KnownHosts(), 0o644)
}

// seedMachine gathers what n's seed holds: its PKI files, then
// /etc/network-environment, then the lab's seed_files for it (extra, as
// read by recipe.Lab.ReadSeedFiles). A seed file at a path the seed
// itself writes is a recipe.ErrorList at the entry's path.
func seedMachine(lab *recipe.Lab, n recipe.Node, p *pki.PKI, extra []recipe.SeedContent) (seed.Machine, error) {
	cidr, err := netip.ParsePrefix(lab.Network.CIDR)
	if err != nil {
		return seed.Machine{}, err
	}
	ip, err := netip.ParseAddr(n.IP)
	if err != nil {
		return seed.Machine{}, err
	}
	gw, err := netip.ParseAddr(lab.Network.Gateway)
	if err != nil {
		return seed.Machine{}, err
	}
	env, err := networkEnvironment(lab, n)
	if err != nil {
		return seed.Machine{}, err
	}
	priv, pub := p.HostKey(n.Name)
	m := seed.Machine{
		Name:           n.Name,
		FQDN:           lab.FQDN(n),
		LabMAC:         n.MAC(),
		Address:        netip.PrefixFrom(ip, cidr.Bits()),
		Gateway:        gw,
		Nameservers:    []netip.Addr{gw},
		SearchDomains:  []string{lab.Network.DNSDomain},
		UplinkMAC:      macaddr.UplinkString(n.Name),
		AuthorizedKeys: p.AuthorizedKeys(),
		HostKeys:       []seed.HostKey{{Type: "ed25519", Private: priv, Public: pub}},
	}
	files, err := p.MachineFiles(n.Name)
	if err != nil {
		return seed.Machine{}, err
	}
	for _, f := range files {
		m.Files = append(m.Files, seed.File{Path: f.Path, Content: f.Content, Mode: f.Mode})
	}
	envFile, err := env.File()
	if err != nil {
		return seed.Machine{}, fmt.Errorf("%s: %w", n.Name, err)
	}
	m.Files = append(m.Files, envFile)
	var clash recipe.ErrorList
	for _, f := range extra {
		if slices.ContainsFunc(m.Files, func(g seed.File) bool { return g.Path == f.Path }) {
			clash = append(clash, &recipe.Error{Pos: f.PathPos, Field: f.Field("path"),
				Msg: fmt.Sprintf("%s is a file the seed of %s writes itself (its certificates, kubeconfigs, /etc/network-environment)", f.Path, n.Name)})
			continue
		}
		m.Files = append(m.Files, seed.File{Path: f.Path, Content: f.Content, Mode: fs.FileMode(f.Mode)})
	}
	if len(clash) > 0 {
		return seed.Machine{}, clash
	}
	return m, nil
}

// networkEnvironment is the machine's /etc/network-environment.
func networkEnvironment(lab *recipe.Lab, n recipe.Node) (seed.NetworkEnvironment, error) {
	var e seed.NetworkEnvironment
	var err error
	e.NodeName = n.Name
	if e.NodeIP, err = netip.ParseAddr(n.IP); err != nil {
		return e, err
	}
	for _, m := range lab.Nodes {
		if m.Role != ControlPlaneRole {
			continue
		}
		if !e.MasterIP.IsValid() {
			e.MasterIP, _ = netip.ParseAddr(m.IP)
		}
		e.EtcdEndpoints = append(e.EtcdEndpoints, "https://"+m.IP+":2379")
	}
	if e.MasterIP.IsValid() {
		e.APIServerURL = "https://" + e.MasterIP.String() + ":6443"
	}
	if e.PodCIDR, err = netip.ParsePrefix(lab.Network.PodCIDR); err != nil {
		return e, err
	}
	if e.ServiceCIDR, err = netip.ParsePrefix(lab.Network.ServiceCIDR); err != nil {
		return e, err
	}
	if e.ClusterDNS, err = netip.ParseAddr(lab.Network.ClusterDNS); err != nil {
		return e, err
	}
	e.ClusterDomain = lab.Network.Domain
	return e, nil
}
