package published

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/iox"
)

// Suffix ends a record's file name: OUT/ROLE.published.json.
const Suffix = ".published.json"

// Record is OUT/ROLE.published.json.
type Record struct {
	Role string `json:"role"`
	// PlanDigest and QCOW2SHA256 are the published image's plan digest
	// (sha256:…) and its qcow2's sha256 (64 hex digits), as its
	// ROLE.manifest.json had them (plan_digest, output.sha256).
	PlanDigest  string `json:"plan_digest"`
	QCOW2SHA256 string `json:"qcow2_sha256"`
	// Artifact is the qcow2 pushed as an OCI artifact; nil if it was not.
	Artifact *Image `json:"artifact,omitempty"`
	// ContainerDisk is the qcow2 in a KubeVirt containerDisk image; nil if
	// it was not pushed as one.
	ContainerDisk *Image `json:"containerdisk,omitempty"`
}

// Image is one pushed image: REPOSITORY@DIGEST, also tagged TAGS.
type Image struct {
	Repository string   `json:"repository"` // e.g. ghcr.io/acme/labbake-node, no tag
	Digest     string   `json:"digest"`     // sha256:<64 hex> of the manifest pushed
	Tags       []string `json:"tags"`       // may be empty
}

// Ref is the image by digest: REPOSITORY@DIGEST.
func (i Image) Ref() string { return i.Repository + "@" + i.Digest }

var (
	roleRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// repoRe is a repository without tag or digest: an optional registry
	// host and port, then lower-case path components.
	repoRe = regexp.MustCompile(`^` +
		`(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	tagRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// problems are a record's problems, said on one line.
type problems []error

func (p problems) Error() string {
	s := make([]string, len(p))
	for i, e := range p {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (p problems) Unwrap() []error { return p }

// Validate reports every problem of the record at once, on one line, each
// naming its field as the file spells it.
func (r *Record) Validate() error {
	var errs problems
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if !roleRe.MatchString(r.Role) {
		bad("role", "%q is not a role name", r.Role)
	}
	if _, err := iox.ParseDigest(r.PlanDigest); err != nil {
		bad("plan_digest", "%q is not sha256:<64 lowercase hex digits>", r.PlanDigest)
	}
	if !iox.IsSHA256Hex(r.QCOW2SHA256) {
		bad("qcow2_sha256", "%q is not 64 lowercase hex digits", r.QCOW2SHA256)
	}
	if r.Artifact == nil && r.ContainerDisk == nil {
		bad("artifact", "none, and no containerdisk either: nothing was published")
	}
	for _, img := range []struct {
		field string
		i     *Image
	}{{"artifact", r.Artifact}, {"containerdisk", r.ContainerDisk}} {
		if img.i == nil {
			continue
		}
		if len(img.i.Repository) > 255 || !repoRe.MatchString(img.i.Repository) {
			bad(img.field+".repository", "%q is not a repository (lower-case path components, optionally behind a registry host; no tag)", img.i.Repository)
		}
		if _, err := iox.ParseDigest(img.i.Digest); err != nil {
			bad(img.field+".digest", "%q is not sha256:<64 lowercase hex digits>", img.i.Digest)
		}
		for j, t := range img.i.Tags {
			if !tagRe.MatchString(t) {
				bad(fmt.Sprintf("%s.tags[%d]", img.field, j), "%q is not a tag", t)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// Stale reports whether the record is of another image than the one whose
// qcow2 has sha256 qcow2SHA256 (the current manifest's output.sha256): the
// role was rebuilt since it was published.
func (r *Record) Stale(qcow2SHA256 string) bool { return r.QCOW2SHA256 != qcow2SHA256 }

// Path is the record of role in outDir.
func Path(outDir, role string) string { return filepath.Join(outDir, role+Suffix) }

// Read reads and checks the record of role in outDir. A missing record is
// an error wrapping fs.ErrNotExist. Fields it does not know are ignored
// (a newer publisher may add some); a record of another role, or one that
// fails Validate, is an error naming the file.
func Read(outDir, role string) (*Record, error) {
	p := Path(outDir, role)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if r.Role != role {
		return nil, fmt.Errorf("%s: a record of role %q, not %q", p, r.Role, role)
	}
	return &r, nil
}

// Write checks rec and writes it to outDir as ROLE.published.json,
// atomically (a temp file renamed over it), mode 0644, indented JSON with
// a final newline; nil tags are written as [].
func Write(outDir string, rec *Record) error {
	if err := rec.Validate(); err != nil {
		return fmt.Errorf("%s: %w", Path(outDir, rec.Role), err)
	}
	r := *rec
	for _, img := range []**Image{&r.Artifact, &r.ContainerDisk} {
		if *img != nil && (*img).Tags == nil {
			c := **img
			c.Tags = []string{}
			*img = &c
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&r); err != nil {
		return err
	}
	return atomicfile.WriteFile(Path(outDir, rec.Role), b.Bytes(), 0o644)
}
