package bake

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/labbake/labbake/builders/boot"
	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/builders/space"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/plan"
)

// Manifest is ROLE.manifest.json: what went into an image and what came
// out, so that a user or CI can tell two images apart without opening them.
type Manifest struct {
	Lab          string       `json:"lab"`
	Role         string       `json:"role"`
	PlanDigest   string       `json:"plan_digest"`
	RecipeDigest string       `json:"recipe_digest"`
	Epoch        int64        `json:"epoch"`
	EpochSource  string       `json:"epoch_source"`
	Inputs       []plan.Input `json:"inputs"`
	// Images are the container images preloaded into containerd.
	Images []ManifestImage `json:"images,omitempty"`
	Output ManifestOutput  `json:"output"`
	// SBOM names the image's SPDX document, ROLE.spdx.json, written with
	// it; nil in the manifests of builds before it was written.
	SBOM       *ManifestSBOM    `json:"sbom,omitempty"`
	Root       ManifestRoot     `json:"root"`
	Partitions []disk.Partition `json:"partitions"`
	Boot       ManifestBoot     `json:"boot"`
	// Space is what takes the space in the root file system: its files'
	// bytes by build stage, by directory, by Debian package; the largest.
	Space *space.Report `json:"space,omitempty"`
}

// ManifestBoot describes how the image boots.
type ManifestBoot struct {
	Methods []string `json:"methods"`           // uefi, bios; none: not meant to boot
	Kernel  string   `json:"kernel,omitempty"`  // the kernel release booted
	Linux   string   `json:"linux,omitempty"`   // its path in the image
	Initrd  string   `json:"initrd,omitempty"`  // the initramfs's path in the image
	Loaders []string `json:"loaders,omitempty"` // "uefi: systemd-boot", "bios: grub i386-pc"
	Cmdline string   `json:"cmdline,omitempty"` // the full kernel command line
}

// ManifestOutput describes the image file.
type ManifestOutput struct {
	File        string `json:"file"`
	Format      string `json:"format"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	VirtualSize int64  `json:"virtual_size"`
	Compressed  bool   `json:"compressed"`
	// Compression is the compression type of the compressed clusters,
	// "zlib" or "zstd" (QEMU's names), when Compressed.
	Compression string `json:"compression,omitempty"`
}

// ManifestSBOM names the image's software bill of materials.
type ManifestSBOM struct {
	File   string `json:"file"`   // ROLE.spdx.json
	SHA256 string `json:"sha256"` // of the file, in hex
}

// ManifestRoot describes the root filesystem.
type ManifestRoot struct {
	Filesystem string `json:"filesystem"`
	UUID       string `json:"uuid"`
	Files      int    `json:"files"`
}

func newManifest(p *plan.Plan, r *Result, c qcow2.Compression, l disk.Layout, ids disk.IDs, b *boot.Result) *Manifest {
	compression := ""
	if c != qcow2.NoCompression {
		compression = c.String()
	}
	inputs := p.Inputs
	if inputs == nil {
		inputs = []plan.Input{}
	}
	return &Manifest{
		Lab:          p.Lab,
		Role:         p.Role,
		PlanDigest:   p.Digest,
		RecipeDigest: p.RecipeDigest,
		Epoch:        p.Epoch,
		EpochSource:  p.EpochSource,
		Inputs:       inputs,
		Images:       r.Images,
		Output: ManifestOutput{
			File:        filepath.Base(r.Image),
			Format:      "qcow2",
			SHA256:      r.SHA256,
			Size:        r.Size,
			VirtualSize: p.Disk.Size,
			Compressed:  c != qcow2.NoCompression,
			Compression: compression,
		},
		Root:       ManifestRoot{Filesystem: p.Disk.Filesystem, UUID: ids.RootFSUUID, Files: r.Files},
		Partitions: []disk.Partition{l.BIOS, l.ESP, l.Root},
		Boot: ManifestBoot{
			Methods: append([]string{}, p.Disk.Boot...),
			Kernel:  b.Kernel.Version,
			Linux:   slashed(b.Kernel.Linux),
			Initrd:  slashed(b.Kernel.Initrd),
			Loaders: b.Loaders,
			Cmdline: b.Cmdline,
		},
		Space: r.Space,
	}
}

// slashed makes a tree path absolute; "" stays "".
func slashed(p string) string {
	if p == "" {
		return ""
	}
	return "/" + p
}

func sortFiles(files []tree.File) {
	slices.SortFunc(files, func(a, b tree.File) int { return strings.Compare(a.Path, b.Path) })
}
