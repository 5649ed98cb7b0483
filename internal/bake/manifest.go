package bake

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/plan"
)

// Manifest is ROLE.manifest.json: what went into an image and what came
// out, so that a user or CI can tell two images apart without opening them.
type Manifest struct {
	Lab          string           `json:"lab"`
	Role         string           `json:"role"`
	PlanDigest   string           `json:"plan_digest"`
	RecipeDigest string           `json:"recipe_digest"`
	Epoch        int64            `json:"epoch"`
	EpochSource  string           `json:"epoch_source"`
	Inputs       []plan.Input     `json:"inputs"`
	Output       ManifestOutput   `json:"output"`
	Root         ManifestRoot     `json:"root"`
	Partitions   []disk.Partition `json:"partitions"`
}

// ManifestOutput describes the image file.
type ManifestOutput struct {
	File        string `json:"file"`
	Format      string `json:"format"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	VirtualSize int64  `json:"virtual_size"`
	Compressed  bool   `json:"compressed"`
}

// ManifestRoot describes the root filesystem.
type ManifestRoot struct {
	Filesystem string `json:"filesystem"`
	UUID       string `json:"uuid"`
	Files      int    `json:"files"`
}

func newManifest(p *plan.Plan, r *Result, compressed bool, l disk.Layout) *Manifest {
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
		Output: ManifestOutput{
			File:        filepath.Base(r.Image),
			Format:      "qcow2",
			SHA256:      r.SHA256,
			Size:        r.Size,
			VirtualSize: p.Disk.Size,
			Compressed:  compressed,
		},
		Root:       ManifestRoot{Filesystem: p.Disk.Filesystem, UUID: p.UUID("root-fs"), Files: r.Files},
		Partitions: []disk.Partition{l.BIOS, l.ESP, l.Root},
	}
}

func sortFiles(files []tree.File) {
	slices.SortFunc(files, func(a, b tree.File) int { return strings.Compare(a.Path, b.Path) })
}
