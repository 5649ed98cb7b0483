package boot

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/labbake/labbake/builders/tree"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNoKernel reports a tree without any kernel image.
	ErrNoKernel = errors.New("no kernel in the image: install linux-image-amd64 or another kernel package " +
		"(looked for /boot/vmlinuz-VERSION and /usr/lib/modules/VERSION/vmlinuz)")
	// ErrNoInitramfs reports a kernel without an initramfs; the root is
	// found by UUID, which needs one.
	ErrNoInitramfs = errors.New("no initramfs")
	// ErrPinnedKernel reports a pinned kernel version the tree lacks.
	ErrPinnedKernel = errors.New("pinned kernel not in the image")
)

// Kernel is a kernel found in a tree, with its initramfs.
type Kernel struct {
	Version string // the kernel release, e.g. "6.12.38+deb13-amd64"
	// Linux and Initrd are the canonical tree paths (relative, no leading
	// slash) of the regular files holding the kernel image and the
	// initramfs, symlinks and hardlinks followed.
	Linux  string
	Initrd string
	// LinuxBlob and InitrdBlob are the host paths of their bytes.
	LinuxBlob  string
	InitrdBlob string
}

// Paths where kernels live.
const (
	bootDir    = "boot"
	modulesDir = "usr/lib/modules"
)

// candidate is a kernel image found before its initramfs is looked up.
type candidate struct {
	version string
	linux   tree.Entry // the Regular entry of the image
	initrds []string   // where its initramfs may be, in order
}

// FindKernel returns the kernel to boot: the one whose version is pin, or,
// when pin is "", the highest version (dpkg order) among the kernels of the
// Debian layout (/boot/vmlinuz-VERSION, /vmlinuz and /boot/vmlinuz
// symlinks) and the bootable-container layout
// (/usr/lib/modules/VERSION/vmlinuz). The initramfs is
// /boot/initrd.img-VERSION (next to the kernel) or
// /usr/lib/modules/VERSION/initramfs.img. No kernel at all is [ErrNoKernel];
// a kernel without initramfs is [ErrNoInitramfs].
func FindKernel(t *tree.Tree, pin string) (Kernel, error) {
	cands, err := candidates(t)
	if err != nil {
		return Kernel{}, err
	}
	if len(cands) == 0 {
		return Kernel{}, ErrNoKernel
	}
	var c candidate
	if pin != "" {
		i := slices.IndexFunc(cands, func(c candidate) bool { return c.version == pin })
		if i < 0 {
			return Kernel{}, fmt.Errorf("kernel %q: %w (found %s)", pin, ErrPinnedKernel, versions(cands))
		}
		c = cands[i]
	} else {
		c = slices.MaxFunc(cands, func(a, b candidate) int { return compareVersions(a.version, b.version) })
	}
	k := Kernel{Version: c.version, Linux: c.linux.Path, LinuxBlob: c.linux.Content.Path}
	for _, p := range c.initrds {
		e, err := follow(t, p)
		if err != nil {
			continue
		}
		k.Initrd, k.InitrdBlob = e.Path, e.Content.Path
		return k, nil
	}
	return Kernel{}, fmt.Errorf("kernel %s (/%s): %w (looked for /%s): install initramfs-tools or dracut",
		c.version, c.linux.Path, ErrNoInitramfs, strings.Join(c.initrds, ", /"))
}

// candidates lists the kernels of t, one per version (the Debian layout
// wins over the container layout), sorted by version.
func candidates(t *tree.Tree) ([]candidate, error) {
	boot, err := canonicalDir(t, bootDir)
	if err != nil {
		return nil, err
	}
	modules, err := canonicalDir(t, modulesDir)
	if err != nil {
		return nil, err
	}
	var out []candidate
	seen := map[string]bool{}
	addCand := func(version, p string, initrds ...string) {
		if version == "" || seen[version] {
			return
		}
		e, err := follow(t, p)
		if err != nil {
			return
		}
		seen[version] = true
		out = append(out, candidate{version: version, linux: e, initrds: initrds})
	}
	var container []string // versions with usr/lib/modules/VERSION/vmlinuz
	for _, e := range t.Entries() {
		dir, base := path.Split(e.Path)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case dir == boot && strings.HasPrefix(base, "vmlinuz-"):
			v := strings.TrimPrefix(base, "vmlinuz-")
			addCand(v, e.Path, path.Join(boot, "initrd.img-"+v), path.Join(modules, v, "initramfs.img"))
		case base == "vmlinuz" && path.Dir(dir) == modules:
			container = append(container, path.Base(dir))
		}
	}
	// /vmlinuz and /boot/vmlinuz point at a kernel that may live elsewhere.
	for _, link := range []string{"vmlinuz", bootDir + "/vmlinuz"} {
		e, err := follow(t, link)
		if err != nil {
			continue
		}
		dir, base := path.Split(e.Path)
		if v, ok := strings.CutPrefix(base, "vmlinuz-"); ok {
			addCand(v, e.Path, path.Join(dir, "initrd.img-"+v), path.Join(boot, "initrd.img-"+v), path.Join(modules, v, "initramfs.img"))
		}
	}
	for _, v := range container {
		addCand(v, path.Join(modules, v, "vmlinuz"), path.Join(modules, v, "initramfs.img"), path.Join(boot, "initrd.img-"+v))
	}
	slices.SortFunc(out, func(a, b candidate) int { return compareVersions(a.version, b.version) })
	return out, nil
}

func versions(cs []candidate) string {
	vs := make([]string, len(cs))
	for i, c := range cs {
		vs[i] = c.version
	}
	return strings.Join(vs, ", ")
}

// canonicalDir returns the canonical tree path of the directory dir,
// symlinks (the final component included) followed inside the tree. A
// missing directory is returned as it would be named.
func canonicalDir(t *tree.Tree, dir string) (string, error) {
	r, err := t.Resolve(dir + "/x")
	if err != nil {
		return "", fmt.Errorf("boot: %w", err)
	}
	return path.Dir(r), nil
}

// maxSymlinks is how many symlinks follow takes, as in Linux.
const maxSymlinks = 40

// follow returns the Regular entry p names, following symlinks (absolute
// targets start at the tree's root, ".." stops at the root) and hardlinks
// inside the tree.
func follow(t *tree.Tree, p string) (tree.Entry, error) {
	cur := p
	for range maxSymlinks {
		r, err := t.Resolve(cur)
		if err != nil {
			return tree.Entry{}, err
		}
		e, ok := t.Get(r)
		if !ok {
			return tree.Entry{}, fmt.Errorf("/%s: not found", r)
		}
		switch e.Type {
		case tree.Regular:
			return e, nil
		case tree.Hardlink:
			cur = "/" + e.Linkname
		case tree.Symlink:
			target := e.Linkname
			if !strings.HasPrefix(target, "/") {
				target = path.Join("/", path.Dir(r), target)
			}
			cur = path.Clean(target)
		default:
			return tree.Entry{}, fmt.Errorf("/%s: a %s, not a regular file", r, e.Type)
		}
	}
	return tree.Entry{}, fmt.Errorf("%s: %w", p, tree.ErrSymlinkLoop)
}
