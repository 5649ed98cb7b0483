package recipe

import (
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/builders/boot"
)

func (d *decoder) decodeDisk(top fields) Disk {
	dk := Disk{Size: 8 * GiB, Filesystem: "ext4", FstabOptions: []string{"discard", "noatime"},
		Boot: slices.Clone(boot.Methods), BootPos: d.pos(top.node)}
	n := top.get("disk")
	if n == nil {
		dk.Pos = d.pos(top.node)
		dk.SizePos = dk.Pos
		return dk
	}
	dk.Pos = d.pos(n)
	dk.SizePos = dk.Pos
	f, ok := d.mapping(n, "disk", "size", "filesystem", "fstab", "boot")
	if !ok {
		return dk
	}
	if bn := f.get("boot"); bn != nil {
		dk.BootPos, dk.BootSet = d.pos(bn), true
		if isNull(bn) {
			dk.Boot = []string{}
		} else if items, ok := d.sequence(bn, "disk.boot"); ok {
			seen := map[string]bool{}
			for i, item := range items {
				path := indexPath("disk.boot", i)
				if s, ok := d.str(item, path); ok {
					if slices.Contains(boot.Methods, s) {
						seen[s] = true
					} else {
						d.errorf(item, path, "unknown boot method %q: use %s", s, strings.Join(boot.Methods, " or "))
					}
				}
			}
			// In a fixed order: extends appends lists, and the order
			// written does not matter.
			dk.Boot = []string{}
			for _, m := range boot.Methods {
				if seen[m] {
					dk.Boot = append(dk.Boot, m)
				}
			}
		}
	}
	if sn := f.get("size"); sn != nil {
		dk.SizePos = d.pos(sn)
		var s string
		ok := true
		switch {
		case sn.Kind == yaml.ScalarNode && sn.ShortTag() == "!!int":
			s = sn.Value
		default:
			s, ok = d.str(sn, "disk.size")
		}
		if ok {
			size, err := ParseSize(s)
			switch {
			case err != nil:
				d.errorf(sn, "disk.size", "%v", err)
			case size < MinDiskSize:
				d.errorf(sn, "disk.size", "size %s is too small: the minimum is %s", s, FormatSize(MinDiskSize))
			case size > MaxDiskSize:
				d.errorf(sn, "disk.size", "size %s is too large: the maximum is %s", s, FormatSize(MaxDiskSize))
			case size%MiB != 0:
				d.errorf(sn, "disk.size", "size %s is not a multiple of 1MiB", s)
			default:
				dk.Size = size
			}
		}
	}
	if fn := f.get("filesystem"); fn != nil {
		if s, ok := d.str(fn, "disk.filesystem"); ok {
			if s != "ext4" {
				d.errorf(fn, "disk.filesystem", "filesystem %q is not supported: use ext4", s)
			}
		}
	}
	if fsn := f.get("fstab"); fsn != nil {
		ff, ok := d.mapping(fsn, "disk.fstab", "options")
		if ok && ff.vals["options"] != nil && !isNull(ff.vals["options"]) {
			items, ok := d.sequence(ff.vals["options"], "disk.fstab.options")
			if ok {
				opts := []string{}
				seen := map[string]bool{}
				for i, item := range items {
					path := indexPath("disk.fstab.options", i)
					s, ok := d.str(item, path)
					if !ok {
						continue
					}
					switch {
					case s == "" || strings.ContainsAny(s, " \t\n,#\x00"):
						d.errorf(item, path, "fstab option %q must be non-empty, without spaces or commas", s)
					case seen[s]:
						d.errorf(item, path, "duplicate fstab option %q", s)
					default:
						seen[s] = true
						opts = append(opts, s)
					}
				}
				dk.FstabOptions = opts
			}
		}
	}
	return dk
}

func (d *decoder) decodeKernel(top fields) Kernel {
	k := Kernel{Cmdline: DefaultCmdline, Pos: d.pos(top.node)}
	n := top.get("kernel")
	if n == nil {
		return k
	}
	k.Pos = d.pos(n)
	f, ok := d.mapping(n, "kernel", "version", "cmdline")
	if !ok {
		return k
	}
	if vn := f.get("version"); vn != nil && !isNull(vn) {
		if s, ok := d.str(vn, "kernel.version"); ok {
			if s == "" || strings.ContainsAny(s, "/ \t\n\x00") || s == "." || s == ".." {
				d.errorf(vn, "kernel.version", "kernel version %q must be a kernel release such as 6.12.57+deb13-amd64", s)
			} else {
				k.Version = s
			}
		}
	}
	if cn := f.get("cmdline"); cn != nil {
		if isNull(cn) {
			k.Cmdline = ""
		} else if s, ok := d.str(cn, "kernel.cmdline"); ok {
			switch {
			case strings.ContainsAny(s, "\n\r\x00"):
				d.errorf(cn, "kernel.cmdline", "the kernel command line must be one line")
			case strings.ContainsAny(s, "'\"\\"):
				// Boot loaders treat quotes differently (GRUB escapes
				// them): options are words separated by spaces.
				d.errorf(cn, "kernel.cmdline", "quotes and backslashes are not supported: options are words separated by spaces")
			default:
				k.Cmdline = strings.Join(strings.Fields(s), " ")
			}
		}
	}
	return k
}
