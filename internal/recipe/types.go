package recipe

import (
	"regexp"

	"github.com/labbake/labbake/builders/boot"
	"github.com/labbake/labbake/builders/disk"
)

// Recipe is the effective recipe of a role: its file and those it extends
// rendered, merged, decoded and checked. Host paths are absolute.
type Recipe struct {
	Role      string
	Sources   []Source // every recipe file used, the role's first, then what it extends
	Rendered  []byte   // the merged recipe as YAML (what `labbake render ROLE` prints)
	Base      Base
	Layers    []Layer
	Artifacts []Artifact
	Files     []File
	Units     []Unit
	Overlays  []Overlay
	// Images are container images preloaded into Containerd's store.
	Images     []Image
	Containerd Containerd
	Disk       Disk
	Kernel     Kernel
	Checks     Checks
	Secrets    Secrets
}

// Source is one recipe file and its rendered text.
type Source struct {
	File     string // relative to the lab dir: "recipes/common.yaml"
	Rendered []byte
}

// Base is the root file system the image starts from, exactly one of: a tar
// archive, a directory tree, a Debian system made by mmdebstrap, or an OCI
// image.
type Base struct {
	Tar    string
	Dir    string
	Debian *Debian
	OCI    string // an image reference: docker://…, oci:DIR:TAG, oci-archive:FILE, …
	Pos    Pos
}

// Debian describes a root file system built with mmdebstrap.
type Debian struct {
	Suite      string
	Mirror     string
	Components []string
	Variant    string
	Packages   []string
	Snapshot   string
	Extra      []string // more suites of the same mirror, e.g. bookworm-updates
	Docs       bool     // keep documentation, man and info pages (left out by default)
	Pos        Pos
}

// Layer is unpacked over the base, in order: a tar archive or an OCI image
// (all its layers).
type Layer struct {
	Tar string
	OCI string
	Pos Pos
}

// File is a file or symbolic link written into the image.
type File struct {
	Path     string // absolute and clean in the image: "/etc/motd"
	Content  []byte // for a regular file
	Symlink  string // link target, for a symbolic link
	Mode     uint32 // permission bits; 0644 for a file, 0777 for a link unless set
	UID, GID int
	Pos      Pos
}

// Unit is a systemd unit installed into the image.
type Unit struct {
	Name    string
	Source  string // absolute path of units/NAME or units/NAME.tmpl
	Content []byte // the file, rendered when it is a .tmpl
	Enable  bool
	Pos     Pos
}

// Overlay is a directory tree copied over the image. Its *.tmpl files are
// rendered: Templates maps their slash path relative to the overlay root,
// without .tmpl, to the rendered bytes.
type Overlay struct {
	Name      string
	Dir       string
	Templates map[string][]byte
	Pos       Pos
}

// Disk is the image's disk and root file system.
type Disk struct {
	Size         int64    // bytes; default 8GiB
	Filesystem   string   // only "ext4"
	FstabOptions []string // root mount options; default discard, noatime
	// Boot are the boot methods installed ("uefi", "bios"), in that
	// order, without repeats; default both. Empty: the image is not meant
	// to boot and needs no kernel.
	Boot    []string
	BootPos Pos  // of disk.boot, or of the recipe when it is not set
	BootSet bool // the recipe sets disk.boot
	SizePos Pos  // of disk.size, or of disk (or the recipe) when it is not set
	Pos     Pos
}

// Boot methods: the disk builder's (builders/boot), in the order they are
// installed.
const (
	BootUEFI = boot.UEFI
	BootBIOS = boot.BIOS
)

// DefaultCmdline is the kernel command line after the root when a recipe
// sets none: the serial console (what QEMU -nographic and `labbake test`
// read) and the screen.
const DefaultCmdline = "console=ttyS0,115200 console=tty0"

// Kernel picks the kernel to boot and its command line.
type Kernel struct {
	// Version pins the kernel release to boot ("6.12.57+deb13-amd64");
	// "" takes the highest in the image.
	Version string
	// Cmdline follows root=UUID=… ro on the kernel command line;
	// default DefaultCmdline.
	Cmdline string
	Pos     Pos // of kernel, or of the recipe when it is not set
}

// Disk size bounds. The minimum is the disk builder's: the fixed
// partitions and the smallest root it makes.
const (
	MinDiskSize = disk.MinSize
	MaxDiskSize = 2 * TiB
)

var (
	modeRe  = regexp.MustCompile(`^0?[0-7]{3,4}$`)
	ownerRe = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)
)
