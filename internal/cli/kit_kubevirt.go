package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/builders/kit"
	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/published"
)

// rolePlaceholder is replaced by the role in --kubevirt's repository.
const rolePlaceholder = "{role}"

// kubeVirtRepository is the repository of role's containerDisk by
// --kubevirt's pattern: {role} replaced, or -ROLE appended when the
// pattern has none.
func kubeVirtRepository(pattern, role string) string {
	if !strings.Contains(pattern, rolePlaceholder) {
		pattern += "-" + rolePlaceholder
	}
	return strings.ReplaceAll(pattern, rolePlaceholder, role)
}

// kubeVirtImage is role's containerDisk by digest and how its image boots,
// from OUT/ROLE.published.json and OUT/ROLE.manifest.json. Every refusal
// is a UsageError (exit 2) of one line.
func kubeVirtImage(out, pattern, role string) (ref, firmware string, err error) {
	usage := func(format string, a ...any) error {
		return &UsageError{fmt.Errorf(role+": "+format, a...)}
	}
	repo := kubeVirtRepository(pattern, role)
	if err := kit.ValidRepository(repo); err != nil {
		return "", "", usage("--kubevirt %s: %v", pattern, err)
	}
	pubPath := published.Path(out, role)
	rec, err := published.Read(out, role)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", "", usage("not published: %s does not exist (labbake publish %s first)", pubPath, role)
	case err != nil:
		return "", "", &UsageError{fmt.Errorf("%s: %w", role, err)}
	case rec.ContainerDisk == nil:
		return "", "", usage("%s has no containerdisk: publish %s as a containerDisk first", pubPath, role)
	case rec.ContainerDisk.Repository != repo:
		return "", "", usage("%s: its containerDisk is in %s, not %s (--kubevirt %s)", pubPath, rec.ContainerDisk.Repository, repo, pattern)
	}
	manPath := filepath.Join(out, role+".manifest.json")
	b, err := os.ReadFile(manPath)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", usage("%s does not exist: cannot tell that the published image is the current one (labbake build %s, then labbake publish %s)", manPath, role, role)
	}
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", role, err)
	}
	var m bake.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return "", "", usage("reading %s: %v", manPath, err)
	}
	if rec.Stale(m.Output.SHA256) {
		return "", "", usage("rebuilt since published; publish again (%s's qcow2 sha256 is %.12s…, %s has %.12s…)", manPath, m.Output.SHA256, pubPath, rec.QCOW2SHA256)
	}
	if len(m.Boot.Methods) == 0 || !slices.Contains([]string{kit.FirmwareUEFI, kit.FirmwareBIOS}, m.Boot.Methods[0]) {
		return "", "", usage("the image has no boot loader (disk.boot %q in its recipe): a VM cannot boot it", m.Boot.Methods)
	}
	return rec.ContainerDisk.Ref(), m.Boot.Methods[0], nil
}

// writeKubeVirtKit writes OUT/kit/kubevirt/ for lab.yaml's machines, each
// booting its role's published containerDisk in the repository that
// pattern names.
func writeKubeVirtKit(cmd *cobra.Command, g *globals, pattern string) (string, error) {
	log, err := g.logger()
	if err != nil {
		return "", err
	}
	lab, err := g.loadLab(cmd.Context())
	if err != nil {
		return "", err
	}
	if len(lab.Nodes) == 0 {
		return "", &UsageError{errors.New("lab.yaml names no machines")}
	}
	out := g.outDir()
	type image struct{ ref, firmware string }
	images := map[string]image{}
	for _, role := range lab.Roles() {
		ref, fw, err := kubeVirtImage(out, pattern, role)
		if err != nil {
			return "", err
		}
		images[role] = image{ref, fw}
	}
	seeds, err := bake.RenderSeeds(cmd.Context(), lab, nil, g.seedOptions(log))
	if err != nil {
		return "", err
	}
	kl := kit.KubeVirtLab{
		Name:    lab.Name,
		Network: kit.KubeVirtNetwork{Name: lab.Name, Bridge: lab.Network.Bridge},
	}
	docs := map[string]bake.RenderedSeed{}
	for _, s := range seeds {
		docs[s.Node] = s
	}
	for _, n := range lab.Nodes {
		s := docs[n.Name].Seed
		kl.Machines = append(kl.Machines, kit.KubeVirtMachine{
			Name: n.Name, Role: n.Role, CPUs: n.CPUs, MemoryMiB: n.MemoryBytes >> 20,
			Firmware: images[n.Role].firmware,
			LabMAC:   n.MAC(), UplinkMAC: kit.UplinkMAC(n.Name),
			Image:    images[n.Role].ref,
			UserData: s.UserData, NetworkConfig: s.NetworkConfig,
		})
	}
	files, err := kit.KubeVirt(kl)
	if err != nil {
		return "", &UsageError{err}
	}
	dir := filepath.Join(out, bake.KitDir, kit.KubeVirtDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), files[name], kit.KubeVirtFileMode(name)); err != nil {
			return "", err
		}
	}
	// A machine no longer in lab.yaml leaves no VM or Secret behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok && e.Type().IsRegular() && kit.IsKubeVirtMachineFile(e.Name()) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return "", err
			}
			log.Info("removed the file of a machine no longer in lab.yaml", "path", filepath.Join(dir, e.Name()))
		}
	}
	log.Info("KubeVirt kit written", "dir", dir, "machines", len(kl.Machines))
	return dir, nil
}
