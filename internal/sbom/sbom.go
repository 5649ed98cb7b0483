package sbom

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"

	"github.com/labbake/labbake/builders/dpkg"
	"github.com/labbake/labbake/internal/plan"
)

// Image is what a document describes: one role's image and what went into
// it.
type Image struct {
	Lab, Role  string
	PlanDigest string // sha256:HEX
	Epoch      int64  // the plan's: the document's creation time
	// Version is labbake's, as the creator "Tool: labbake-VERSION" names
	// it; "" is written as "unknown".
	Version string
	File    string // the image's file name: ROLE.qcow2
	SHA256  string // its sha256, in hex
	// Inputs are the plan's, the base among them.
	Inputs []plan.Input
	// Containers are the container images preloaded into containerd.
	Containers []Container
	// Debs are the Debian packages of the image's dpkg database.
	Debs []dpkg.Package
}

// Container is a container image preloaded into the image's containerd.
type Container struct {
	Ref    string // as containerd names it: registry.k8s.io/pause:3.10.2
	Digest string // its platform manifest's digest, sha256:HEX
}

// Marshal returns img's SPDX document as indented JSON, ending in a
// newline.
func Marshal(img *Image) ([]byte, error) {
	doc, err := Document(img)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := spdxjson.Write(doc, &b, spdxjson.Indent("  "), spdxjson.EscapeHTML(false)); err != nil {
		return nil, fmt.Errorf("sbom: encoding %s: %w", img.Role, err)
	}
	return b.Bytes(), nil
}

// Document returns img's SPDX document. Its packages are the image's first,
// then the others sorted by SPDX ID; two packages with the same ID (two
// inputs of the same field) are an error.
func Document(img *Image) (*spdx.Document, error) {
	created := time.Unix(img.Epoch, 0).UTC().Format(time.RFC3339)
	root := imagePackage(img, created)
	var pkgs []*spdx.Package
	for _, d := range img.Debs {
		pkgs = append(pkgs, debPackage(d))
	}
	for _, in := range img.Inputs {
		pkgs = append(pkgs, inputPackage(in))
	}
	for _, c := range img.Containers {
		pkgs = append(pkgs, containerPackage(c))
	}
	slices.SortFunc(pkgs, func(a, b *spdx.Package) int {
		return strings.Compare(string(a.PackageSPDXIdentifier), string(b.PackageSPDXIdentifier))
	})
	for i := 1; i < len(pkgs); i++ {
		if pkgs[i].PackageSPDXIdentifier == pkgs[i-1].PackageSPDXIdentifier {
			return nil, fmt.Errorf("sbom: two packages with the SPDX ID %s", pkgs[i].PackageSPDXIdentifier)
		}
	}
	rels := []*spdx.Relationship{relationship("DOCUMENT", common.TypeRelationshipDescribe, root.PackageSPDXIdentifier)}
	for _, p := range pkgs {
		rels = append(rels, relationship(root.PackageSPDXIdentifier, common.TypeRelationshipContains, p.PackageSPDXIdentifier))
	}
	return &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      img.Lab + "/" + img.Role,
		DocumentNamespace: Namespace(img.Lab, img.Role, img.PlanDigest),
		DocumentComment:   "The " + img.Role + " image of lab " + img.Lab + " as labbake baked it: the Debian packages of its dpkg database, the inputs of its plan " + img.PlanDigest + " and the container images preloaded into containerd.",
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: "labbake-" + cmp.Or(img.Version, "unknown")}},
			Created:  created,
		},
		Packages:      append([]*spdx.Package{root}, pkgs...),
		Relationships: rels,
	}, nil
}

// Namespace is the document namespace of a role's document: a URN made of
// the lab, the role and the plan digest, unique to the plan and naming no
// host.
func Namespace(lab, role, planDigest string) string {
	return "urn:labbake:" + url.PathEscape(lab) + ":" + url.PathEscape(role) + ":" + url.PathEscape(planDigest)
}

func relationship(a common.ElementID, kind string, b common.ElementID) *spdx.Relationship {
	return &spdx.Relationship{RefA: common.MakeDocElementID("", string(a)), RefB: common.MakeDocElementID("", string(b)), Relationship: kind}
}

// noAssertion is SPDX's word for a value the document does not state.
const noAssertion = "NOASSERTION"

// Primary package purposes, as the SPDX 2.3 JSON schema spells them.
const (
	purposeOS          = "OPERATING_SYSTEM"
	purposeContainer   = "CONTAINER"
	purposeArchive     = "ARCHIVE"
	purposeFile        = "FILE"
	purposeApplication = "APPLICATION"
	purposeOther       = "OTHER"
)

func imagePackage(img *Image, created string) *spdx.Package {
	return &spdx.Package{
		PackageName:             img.Role + " image of " + img.Lab,
		PackageSPDXIdentifier:   id("image", img.Role),
		PackageFileName:         img.File,
		PackageDownloadLocation: noAssertion,
		PackageChecksums:        checksums("sha256:" + img.SHA256),
		PackageComment:          "qcow2 disk image baked by labbake from plan " + img.PlanDigest,
		PrimaryPackagePurpose:   purposeOS,
		BuiltDate:               created,
	}
}

func debPackage(d dpkg.Package) *spdx.Package {
	return &spdx.Package{
		PackageName:             d.Name,
		PackageSPDXIdentifier:   id("deb", d.Name, d.Architecture),
		PackageVersion:          d.Version,
		PackageDownloadLocation: noAssertion,
		PackageSourceInfo:       strings.TrimSpace("built from the Debian source package " + d.Source + " " + d.SourceVersion),
		PackageExternalReferences: []*spdx.PackageExternalReference{{
			Category: common.CategoryPackageManager,
			RefType:  common.TypePackageManagerPURL,
			Locator:  debPURL(d),
		}},
	}
}

// debPURL is d's package URL, pkg:deb/debian/NAME@VERSION?arch=ARCH, less
// what d does not say.
func debPURL(d dpkg.Package) string {
	s := "pkg:deb/debian/" + purlEscape(d.Name)
	if d.Version != "" {
		s += "@" + purlEscape(d.Version)
	}
	if d.Architecture != "" {
		s += "?arch=" + purlEscape(d.Architecture)
	}
	return s
}

// purlEscape percent-encodes what a purl component may not hold as is;
// Debian names and versions ([a-z0-9.+~:-]) are kept as they are.
func purlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".+~:_-", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func inputPackage(in plan.Input) *spdx.Package {
	p := &spdx.Package{
		PackageName:             in.Name,
		PackageSPDXIdentifier:   id("input", in.Field),
		PackageDownloadLocation: noAssertion,
		PackageChecksums:        checksums(in.Digest),
		PackageComment:          fmt.Sprintf("plan input %s, kind %s, digest %s", in.Field, in.Kind, in.Digest),
		PrimaryPackagePurpose:   purpose(in.Kind),
	}
	if in.Source != "" {
		p.PackageSourceInfo = "from " + in.Source
	}
	if u, err := url.Parse(in.Source); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		p.PackageDownloadLocation = in.Source
	}
	return p
}

// purpose is the primary purpose of an input of kind k.
func purpose(k plan.Kind) string {
	switch k {
	case plan.BaseTar, plan.BaseDir, plan.BaseDebian, plan.BaseOCI:
		return purposeOS
	case plan.LayerOCI, plan.ArtifactImage, plan.ContainerImage, plan.ImageBuilt:
		return purposeContainer
	case plan.LayerTar, plan.ArtifactArchive:
		return purposeArchive
	case plan.ArtifactURL, plan.ArtifactFile, plan.Unit:
		return purposeFile
	case plan.ArtifactGo:
		return purposeApplication
	}
	return purposeOther
}

func containerPackage(c Container) *spdx.Package {
	return &spdx.Package{
		PackageName:             c.Ref,
		PackageSPDXIdentifier:   id("container", c.Ref),
		PackageDownloadLocation: noAssertion,
		PackageChecksums:        checksums(c.Digest),
		PackageComment:          "container image preloaded into containerd, manifest " + c.Digest,
		PrimaryPackagePurpose:   purposeContainer,
	}
}

// checksums is digest (ALGORITHM:HEX) as SPDX checksums: none when it is
// not a sha256 or sha512 digest in lower-case hex (go-digest's rules).
func checksums(s string) []common.Checksum {
	d, err := digest.Parse(s)
	if err != nil {
		return nil
	}
	var a common.ChecksumAlgorithm
	switch d.Algorithm() {
	case digest.SHA256:
		a = common.SHA256
	case digest.SHA512:
		a = common.SHA512
	default:
		return nil
	}
	return []common.Checksum{{Algorithm: a, Value: d.Encoded()}}
}

// id is the SPDX ID (without its SPDXRef- prefix) of a package of a kind
// with a name made of parts: kind-PART-PART, where each character an SPDX
// ID cannot hold (outside [A-Za-z0-9.-]) is "-" and, when there was one,
// the first 8 hex digits of the parts' sha256 follow, so that names that
// differ only in such characters (libstdc++6, libstdc--6) do not share an
// ID.
func id(kind string, parts ...string) common.ElementID {
	raw := strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), "-")
	clean := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, raw)
	if clean != raw {
		sum := sha256.Sum256([]byte(raw))
		clean += "-" + hex.EncodeToString(sum[:4])
	}
	return common.ElementID(kind + "-" + clean)
}
