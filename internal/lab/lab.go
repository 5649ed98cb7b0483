package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labbake/labbake/builders/kit"
	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/machine"
	"github.com/labbake/labbake/internal/recipe"
)

// Options are how this host runs the lab.
type Options struct {
	OutDir  string // absolute or relative to the working dir
	Network string // "" = lab.yaml's network.mode
	Accel   string // "" = KVM when it runs guests, else TCG
	// Restrict cuts the user-mode uplink off from everything but the
	// forwarded host ports (QEMU's restrict=on); tests use it.
	Restrict           bool
	QEMU               string // "" = qemu-system-x86_64 from PATH
	OVMFCode, OVMFVars string // "" = Debian's ovmf files
	Logger             *slog.Logger
}

// Default firmware files (Debian's ovmf package).
const (
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// APIPort is kube-apiserver's port on the control plane.
const APIPort = 6443

// Lab is the lab set up on this host: what Up starts.
type Lab struct {
	Recipe *recipe.Lab
	Mode   string // kit.ModeBridge or kit.ModeUser
	Accel  string // kit.AccelKVM or kit.AccelTCG
	OutDir string // absolute
	RunDir string // OUT/run
	Kit    kit.Lab
	qemu   string
	// images are the role images' sha256 (from their manifests).
	images map[string]string
	log    *slog.Logger
	opts   Options
}

// UsageError is a problem the user fixes by running another labbake
// command first (build, seed, reset) or by fixing lab.yaml.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Open resolves how the lab runs here: the network mode, the accelerator,
// the host ports (kept in OUT/run/ports.json across runs) and each
// machine's files. It checks nothing about the images yet (see Check).
func Open(ctx context.Context, l *recipe.Lab, opts Options) (*Lab, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, err
	}
	s := &Lab{Recipe: l, OutDir: out, RunDir: filepath.Join(out, "run"), log: log, opts: opts, images: map[string]string{}}
	s.qemu = opts.QEMU
	if s.qemu == "" {
		s.qemu = kit.QEMU
	}
	mode := opts.Network
	if mode == "" {
		mode = l.Network.Mode
	}
	switch mode {
	case recipe.ModeAuto:
		mode = kit.ModeUser
		if _, err := os.Stat(filepath.Join("/sys/class/net", l.Network.Bridge)); err == nil {
			mode = kit.ModeBridge
		}
	case kit.ModeBridge, kit.ModeUser:
	default:
		return nil, &UsageError{fmt.Errorf("--network %q: want auto, bridge or user", mode)}
	}
	s.Mode = mode
	if err := atomicfile.MkdirPrivate(s.RunDir, 0o755); err != nil {
		return nil, err
	}
	// The accelerator matters only to Up (see ResolveAccel); until then
	// the command lines say TCG.
	accel := kit.AccelTCG
	if opts.Accel == kit.AccelKVM {
		accel = kit.AccelKVM
	}
	s.Accel = accel
	ports, err := s.ports()
	if err != nil {
		return nil, err
	}
	cidr, err := netip.ParsePrefix(l.Network.CIDR)
	if err != nil {
		return nil, err
	}
	gw, err := netip.ParseAddr(l.Network.Gateway)
	if err != nil {
		return nil, err
	}
	s.Kit = kit.Lab{
		Name: l.Name,
		Network: kit.Network{
			Mode: mode, Bridge: l.Network.Bridge, CIDR: cidr, Gateway: gw, Domain: l.Network.DNSDomain,
			McastGroup: mcastGroup(l.Name, out), Restrict: opts.Restrict,
		},
		Host: kit.Host{
			Accel:    accel,
			OVMFCode: orDefault(opts.OVMFCode, DefaultOVMFCode),
			OVMFVars: orDefault(opts.OVMFVars, DefaultOVMFVars),
			RunDir:   s.RunDir,
		},
		SSH: kit.SSH{KnownHostsFile: filepath.Join(out, bake.KnownHosts)},
	}
	if len(l.SSH.AuthorizedKeys) == 0 {
		s.Kit.SSH.IdentityFile = filepath.Join(out, bake.PKIDir, "ssh", "id_ed25519")
	}
	if s.Kit.Machines, err = s.kitMachines(ports); err != nil {
		return nil, err
	}
	if err := s.Kit.Validate(); err != nil {
		return nil, &UsageError{err}
	}
	return s, nil
}

// kitMachines are the lab's machines as the kit and QEMU see them: files
// under OUT, firmware from the image's manifest, forwarded ports in user
// mode.
func (s *Lab) kitMachines(ports map[string]map[string]int) ([]kit.Machine, error) {
	var out []kit.Machine
	for _, n := range s.Recipe.Nodes {
		ip, err := netip.ParseAddr(n.IP)
		if err != nil {
			return nil, err
		}
		m := kit.Machine{
			Name: n.Name, Role: n.Role, IP: ip, CPUs: n.CPUs, MemoryMiB: n.MemoryBytes >> 20,
			Image:    filepath.Join(s.OutDir, n.Role+".qcow2"),
			Overlay:  machine.PathsFor(s.RunDir, n.Name).Overlay,
			Vars:     machine.PathsFor(s.RunDir, n.Name).Vars,
			Seed:     filepath.Join(s.OutDir, bake.SeedDir, n.Name+".iso"),
			Firmware: s.firmware(n.Role),
		}
		if s.Mode == kit.ModeUser {
			p := ports[n.Name]
			m.SSHPort = p["ssh"]
			if api := p["api"]; api != 0 {
				m.Forwards = append(m.Forwards, kit.Forward{HostPort: api, GuestPort: APIPort})
			}
			if n.Name == s.nodePortMachine() {
				for _, np := range s.Recipe.Network.NodePorts {
					m.Forwards = append(m.Forwards, kit.Forward{HostPort: p[strconv.Itoa(np)], GuestPort: np})
				}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// ResolveAccel picks the accelerator machines are started with: the one
// asked for, else KVM when it runs guests here (probed once per host
// boot), else TCG.
func (s *Lab) ResolveAccel(ctx context.Context) error {
	accel, err := s.accel(ctx)
	if err != nil {
		return err
	}
	s.Accel, s.Kit.Host.Accel = accel, accel
	return nil
}

// firmware is the first boot method of the role's image (its manifest);
// uefi when the manifest cannot be read (Check reports that).
func (s *Lab) firmware(role string) string {
	m, err := readManifest(filepath.Join(s.OutDir, role+".manifest.json"))
	if err != nil || len(m.Boot.Methods) == 0 {
		return kit.FirmwareUEFI
	}
	return m.Boot.Methods[0]
}

func readManifest(path string) (*bake.Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m bake.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

// mcastGroup is the user-mode L2 segment of this lab: a group and port
// derived from the lab's name and output dir, so two labs on one host do
// not share a segment. 239.255/16 is the organization-local scope.
func mcastGroup(name, out string) string {
	c := crc32.ChecksumIEEE([]byte(name + "\x00" + out))
	return fmt.Sprintf("239.255.%d.%d:%d", byte(c>>24), byte(c>>16)|1, 20000+int(c&0xffff)%20000)
}

// nodePortMachine is the machine the NodePorts of lab.yaml
// (network.node_ports) are forwarded to in user mode: the first control
// plane machine, else the first machine. A NodePort answers on every node.
func (s *Lab) nodePortMachine() string {
	for _, n := range s.Recipe.Nodes {
		if n.Role == bake.ControlPlaneRole {
			return n.Name
		}
	}
	if len(s.Recipe.Nodes) > 0 {
		return s.Recipe.Nodes[0].Name
	}
	return ""
}

// NodePorts returns the host ports (on 127.0.0.1) forwarded to the
// NodePorts lab.yaml lists, in user mode; nil in bridge mode, where the
// machines' lab addresses are reached directly.
func (s *Lab) NodePorts() []kit.Forward {
	if s.Mode != kit.ModeUser {
		return nil
	}
	m, ok := s.machine(s.nodePortMachine())
	if !ok {
		return nil
	}
	var out []kit.Forward
	for _, f := range m.Forwards {
		if f.GuestPort != APIPort {
			out = append(out, f)
		}
	}
	return out
}

// portsFile keeps the host ports forwarded in user mode.
const portsFile = "ports.json"

// ports loads the forwarded host ports and gives a free one to every
// machine lacking one (ssh; the API for control-plane machines; each
// NodePort of lab.yaml, keyed by its number, for nodePortMachine); a port
// taken by another program meanwhile is replaced when its machine is not
// running.
func (s *Lab) ports() (map[string]map[string]int, error) {
	path := filepath.Join(s.RunDir, portsFile)
	ports := map[string]map[string]int{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &ports); err != nil {
			return nil, fmt.Errorf("%s: %w (delete it to choose new ports)", path, err)
		}
	}
	if s.Mode != kit.ModeUser {
		return ports, nil
	}
	changed := false
	used := map[int]bool{}
	for _, p := range ports {
		for _, v := range p {
			used[v] = true
		}
	}
	for _, n := range s.Recipe.Nodes {
		if ports[n.Name] == nil {
			ports[n.Name] = map[string]int{}
		}
		want := []string{"ssh"}
		if n.Role == bake.ControlPlaneRole {
			want = append(want, "api")
		}
		if n.Name == s.nodePortMachine() {
			for _, np := range s.Recipe.Network.NodePorts {
				want = append(want, strconv.Itoa(np))
			}
		}
		st, _ := machine.Inspect(s.RunDir, n.Name)
		for _, k := range want {
			if p := ports[n.Name][k]; p != 0 && (st.State == machine.Running || portFree(p)) {
				continue
			}
			p, err := freePort(used)
			if err != nil {
				return nil, err
			}
			ports[n.Name][k], used[p], changed = p, true, true
		}
	}
	if changed {
		b, _ := json.MarshalIndent(ports, "", "  ")
		if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return ports, nil
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort(used map[int]bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !used[p] {
			return p, nil
		}
	}
	return 0, errors.New("finding a free port: none found")
}

// Names checks the machines asked for (all when none).
func (s *Lab) Names(args []string) ([]string, error) {
	if len(args) == 0 {
		names := make([]string, len(s.Kit.Machines))
		for i, m := range s.Kit.Machines {
			names[i] = m.Name
		}
		return names, nil
	}
	for _, a := range args {
		if _, ok := s.machine(a); !ok {
			return nil, &UsageError{fmt.Errorf("no machine %q in lab.yaml", a)}
		}
	}
	return args, nil
}

func (s *Lab) machine(name string) (kit.Machine, bool) {
	for _, m := range s.Kit.Machines {
		if m.Name == name {
			return m, true
		}
	}
	return kit.Machine{}, false
}

// Check makes sure each machine's image and seed exist and are current:
// the image's recipe digest is the recipe's now, the seed is newer than
// lab.yaml and than the seed files it carries. Every problem is reported
// at once with the command that fixes it.
func (s *Lab) Check(names []string) error {
	var problems []string
	labMod := modTime(filepath.Join(s.Recipe.Dir, "lab.yaml"))
	checked := map[string]bool{}
	for _, name := range names {
		m, _ := s.machine(name)
		if !checked[m.Role] {
			checked[m.Role] = true
			if p := s.checkImage(m.Role); p != "" {
				problems = append(problems, p)
			}
		}
		st, err := os.Stat(m.Seed)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: no seed %s: run labbake seed %s (or labbake build)", name, m.Seed, name))
		case st.ModTime().Before(labMod):
			problems = append(problems, fmt.Sprintf("%s: its seed is older than lab.yaml: run labbake seed %s", name, name))
		default:
			if f, ok := s.newerSeedFile(name, st.ModTime()); ok {
				problems = append(problems, fmt.Sprintf("%s: its seed is older than %s (seed_files): run labbake seed %s", name, f, name))
			}
		}
	}
	if len(problems) > 0 {
		return &UsageError{errors.New(strings.Join(problems, "\n"))}
	}
	return nil
}

// newerSeedFile names the first of the seed files machine name gets
// that changed after its seed was written (at seed). A seed file that
// cannot be resolved is left to labbake seed to report.
func (s *Lab) newerSeedFile(name string, seed time.Time) (string, bool) {
	for _, f := range s.Recipe.SeedFilesFor(name) {
		p, err := s.Recipe.SeedFileSource(f)
		if err != nil {
			continue
		}
		if modTime(p).After(seed) {
			return f.File, true
		}
	}
	return "", false
}

func modTime(p string) time.Time {
	st, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

func (s *Lab) checkImage(role string) string {
	image := filepath.Join(s.OutDir, role+".qcow2")
	m, err := readManifest(filepath.Join(s.OutDir, role+".manifest.json"))
	if _, ierr := os.Stat(image); ierr != nil || err != nil {
		return fmt.Sprintf("role %s: no image %s with its manifest: run labbake build %s", role, image, role)
	}
	s.images[role] = m.Output.SHA256
	r, err := s.Recipe.Recipe(role)
	if err != nil {
		return fmt.Sprintf("role %s: its recipe does not load: %v", role, err)
	}
	sum := sha256.Sum256(r.Rendered)
	if "sha256:"+hex.EncodeToString(sum[:]) != m.RecipeDigest {
		return fmt.Sprintf("role %s: %s was baked from another version of its recipe: run labbake build %s", role, image, role)
	}
	if len(m.Boot.Methods) == 0 {
		return fmt.Sprintf("role %s: the image was baked with disk.boot: [] and cannot boot", role)
	}
	return ""
}

// Result is what Up did to one machine.
type Result struct {
	Name    string
	Started bool // false: it was running already
	Err     error
}

// Up starts the machines (after Check), each in its own goroutine; a
// machine that runs already is left alone.
func (s *Lab) Up(ctx context.Context, names []string) []Result {
	res := make([]Result, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, _ := s.machine(name)
			ports := map[string]int{}
			if m.SSHPort != 0 {
				ports["ssh"] = m.SSHPort
			}
			for _, f := range m.Forwards {
				if f.GuestPort == APIPort {
					ports["api"] = f.HostPort
				} else {
					ports[fmt.Sprint(f.GuestPort)] = f.HostPort
				}
			}
			spec := machine.Spec{
				Name: name, RunDir: s.RunDir, Image: m.Image, ImageSHA256: s.images[m.Role], Seed: m.Seed,
				QEMU: s.qemu, Args: kit.QEMUArgs(m, s.Kit.Network, s.Kit.Host),
				Accel: s.Accel, Network: s.Mode, Ports: ports, Logger: s.log,
			}
			if m.Firmware == kit.FirmwareUEFI {
				spec.VarsTemplate = s.Kit.Host.OVMFVars
			}
			started, err := machine.Up(ctx, spec)
			res[i] = Result{Name: name, Started: started, Err: err}
		}()
	}
	wg.Wait()
	return res
}

// MachineStatus is a machine's state with its addresses.
type MachineStatus struct {
	machine.Status
	Role    string `json:"role"`
	Address string `json:"address"`
	MAC     string `json:"mac"`
}

// Status reports every machine asked for.
func (s *Lab) Status(names []string) ([]MachineStatus, error) {
	var out []MachineStatus
	for _, name := range names {
		m, _ := s.machine(name)
		st, err := machine.Inspect(s.RunDir, name)
		if err != nil {
			return nil, err
		}
		out = append(out, MachineStatus{Status: st, Role: m.Role, Address: m.IP.String(), MAC: kitMAC(name)})
	}
	return out, nil
}

// Down stops the machines at once, each with the timeout.
func (s *Lab) Down(ctx context.Context, names []string, timeout time.Duration) []DownResult {
	res := make([]DownResult, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := machine.Down(ctx, s.RunDir, name, timeout)
			res[i] = DownResult{Name: name, DownResult: r, Err: err}
		}()
	}
	wg.Wait()
	return res
}

// DownResult is how one machine stopped.
type DownResult struct {
	Name string
	machine.DownResult
	Err error
}

// Running lists the machines that run now.
func (s *Lab) Running() []string {
	var out []string
	for _, m := range s.Kit.Machines {
		if st, _ := machine.Inspect(s.RunDir, m.Name); st.State == machine.Running {
			out = append(out, m.Name)
		}
	}
	return out
}

// ControlPlane returns the first control-plane machine.
func (s *Lab) ControlPlane() (kit.Machine, bool) {
	i := slices.IndexFunc(s.Kit.Machines, func(m kit.Machine) bool { return m.Role == bake.ControlPlaneRole })
	if i < 0 {
		return kit.Machine{}, false
	}
	return s.Kit.Machines[i], true
}
