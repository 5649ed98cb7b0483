package debian

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// FormatVersion is mixed into every Key. Bump it whenever the bytes a Spec
// produces change for reasons the Spec does not show (new hooks, new
// mmdebstrap options), so that stale bases in the cache are not reused.
const FormatVersion = 3

// Defaults filled in by Normalize.
const (
	DefaultVariant = "minbase"
	DefaultArch    = "amd64"
)

// DefaultComponents is the component list used when a Spec names none.
func DefaultComponents() []string { return []string{"main"} }

// Variants lists the mmdebstrap variants a Spec may name, in mmdebstrap's
// order. mmdebstrap's "-" alias is not accepted: write "debootstrap".
func Variants() []string {
	return []string{"extract", "custom", "essential", "apt", "required", "minbase",
		"buildd", "important", "debootstrap", "standard"}
}

// snapshotLayout is the timestamp format of snapshot.debian.org.
const snapshotLayout = "20060102T150405Z"

// Spec describes a Debian root filesystem built by mmdebstrap. It is the
// `base: {debian: {...}}` part of a recipe.
type Spec struct {
	// Suite is the release to bootstrap, e.g. "bookworm" or "trixie".
	Suite string `json:"suite"`
	// Mirror is the archive URL. Empty means mmdebstrap's default
	// (http://deb.debian.org/debian, plus -updates and -security for a
	// stable suite when nothing else is given), or the snapshot archive
	// when Snapshot is set.
	Mirror string `json:"mirror,omitempty"`
	// Components default to ["main"].
	Components []string `json:"components"`
	// Variant is an mmdebstrap variant; default "minbase".
	Variant string `json:"variant"`
	// Packages are installed in addition to the variant's set (--include).
	Packages []string `json:"packages,omitempty"`
	// Snapshot is a snapshot.debian.org timestamp (YYYYMMDDTHHMMSSZ). The
	// mirror becomes http://snapshot.debian.org/archive/debian/<ts> unless
	// Mirror is given, and apt's Check-Valid-Until is disabled.
	Snapshot string `json:"snapshot,omitempty"`
	// Extra are more apt sources: a suite name such as "bookworm-updates"
	// or "bookworm-security" (becomes "deb MIRROR SUITE COMPONENTS"), or a
	// complete one-line entry starting with "deb ".
	Extra []string `json:"extra,omitempty"`
	// Arch is the Debian architecture; default "amd64".
	Arch string `json:"arch"`
	// Docs keeps the packages' documentation, man and info pages. By
	// default dpkg leaves them out (but for the copyright files), in the
	// base and in every package installed later: smaller images, and no
	// example keys from /usr/share/doc for the secret scanner to refuse.
	Docs bool `json:"docs,omitempty"`
}

var (
	suiteRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	componentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]*$`)
	archRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	snapshotRE  = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z$`)
	// A package name, optionally with :arch and =version or /release, as
	// apt-get install accepts them.
	packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+|/[A-Za-z0-9.-]+)?$`)
)

// FieldError is one problem Validate finds: the field of the Spec it
// concerns, named as in the recipe ("suite", "extra"), the index of the
// list item when it is one (else -1), and what is wrong. The recipe
// decoder places each at the YAML node of its field.
type FieldError struct {
	Field string
	Index int
	Msg   string
}

// Error formats e as "FIELD: MSG" or "FIELD[INDEX]: MSG".
func (e *FieldError) Error() string {
	if e.Index < 0 {
		return e.Field + ": " + e.Msg
	}
	return fmt.Sprintf("%s[%d]: %s", e.Field, e.Index, e.Msg)
}

// Validate reports every problem of s at once (joined with errors.Join), each
// a *FieldError naming its field: "suite: required", "variant: unknown
// variant …", "snapshot: want YYYYMMDDTHHMMSSZ". Defaults are applied first,
// so an empty Variant, Arch or Components is fine. It is the one check of a
// Debian spec: the recipe decoder uses it too.
func (s Spec) Validate() error {
	n := s.Normalize()
	var errs []error
	add := func(field string, index int, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Index: index, Msg: fmt.Sprintf(format, args...)})
	}

	switch {
	case n.Suite == "":
		add("suite", -1, "required")
	case !suiteRE.MatchString(n.Suite):
		add("suite", -1, "invalid suite name %q", n.Suite)
	}
	if n.Mirror != "" {
		if err := checkMirror(n.Mirror); err != nil {
			add("mirror", -1, "%v", err)
		}
	}
	// Lists are checked as written, so that indexes match the recipe.
	for i, c := range s.Components {
		if c = strings.TrimSpace(c); !componentRE.MatchString(c) {
			add("components", i, "invalid component %q", c)
		}
	}
	if !slices.Contains(Variants(), n.Variant) {
		add("variant", -1, "unknown variant %q (one of %s)", n.Variant, strings.Join(Variants(), ", "))
	}
	for i, p := range s.Packages {
		if p = strings.TrimSpace(p); !packageRE.MatchString(p) {
			add("packages", i, "invalid package %q (want name, name=version or name/release)", p)
		}
	}
	if n.Snapshot != "" {
		if _, err := time.Parse(snapshotLayout, n.Snapshot); err != nil || !snapshotRE.MatchString(n.Snapshot) {
			add("snapshot", -1, "want YYYYMMDDTHHMMSSZ, got %q", n.Snapshot)
		}
	}
	for i, e := range s.Extra {
		if err := checkExtra(strings.TrimSpace(e)); err != nil {
			add("extra", i, "%v", err)
		}
	}
	if !archRE.MatchString(n.Arch) {
		add("arch", -1, "invalid architecture %q", n.Arch)
	}
	return errors.Join(errs...)
}

func checkMirror(m string) error {
	if strings.ContainsAny(m, " \t\r\n") {
		return fmt.Errorf("%q contains white space", m)
	}
	u, err := url.Parse(m)
	if err != nil {
		return fmt.Errorf("%q: %w", m, err)
	}
	switch {
	case u.Scheme == "http", u.Scheme == "https":
		if u.Host == "" {
			return fmt.Errorf("%q has no host", m)
		}
	case u.Scheme == "file", u.Scheme == "copy", strings.HasPrefix(u.Scheme, "mirror+"):
	default:
		return fmt.Errorf("%q: want an http, https, file or copy URL", m)
	}
	return nil
}

func checkExtra(e string) error {
	if strings.ContainsAny(e, "\r\n") {
		return fmt.Errorf("%q contains a line break", e)
	}
	if e == "" {
		return errors.New("empty")
	}
	if isSourceLine(e) {
		if len(strings.Fields(e)) < 3 {
			return fmt.Errorf("%q: want \"deb URI SUITE [COMPONENT...]\"", e)
		}
		return nil
	}
	if !suiteRE.MatchString(e) {
		return fmt.Errorf("%q: want a suite name or a line \"deb URI SUITE COMPONENT...\"", e)
	}
	return nil
}

func isSourceLine(e string) bool {
	return strings.HasPrefix(e, "deb ") || strings.HasPrefix(e, "deb-src ")
}

// Normalize returns s with defaults filled in, white space trimmed and lists
// sorted and deduplicated. Two Specs that build the same base normalize to
// the same value.
func (s Spec) Normalize() Spec {
	n := Spec{
		Suite:      strings.TrimSpace(s.Suite),
		Mirror:     strings.TrimSpace(s.Mirror),
		Components: sortedSet(s.Components, strings.TrimSpace),
		Variant:    strings.TrimSpace(s.Variant),
		Packages:   sortedSet(s.Packages, strings.TrimSpace),
		Snapshot:   strings.TrimSpace(s.Snapshot),
		Extra:      sortedSet(s.Extra, collapseBlanks),
		Arch:       strings.TrimSpace(s.Arch),
		Docs:       s.Docs,
	}
	if len(n.Components) == 0 {
		n.Components = DefaultComponents()
	}
	if n.Variant == "" {
		n.Variant = DefaultVariant
	}
	if n.Arch == "" {
		n.Arch = DefaultArch
	}
	return n
}

// sortedSet cleans every entry with clean, drops empty ones, sorts and
// deduplicates. It never returns a slice sharing memory with in.
func sortedSet(in []string, clean func(string) string) []string {
	var out []string
	for _, v := range in {
		if v = clean(v); v != "" {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// collapseBlanks trims s and turns runs of spaces and tabs into one space,
// so that "deb  URI suite" and "deb URI suite" are the same source. Line
// breaks are kept: Validate rejects them.
func collapseBlanks(s string) string {
	s = strings.TrimSpace(s)
	var b strings.Builder
	blank := false
	for _, r := range s {
		if r == ' ' || r == '\t' {
			blank = true
			continue
		}
		if blank {
			b.WriteByte(' ')
			blank = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Key returns the cache ref key of the base built from s with
// SOURCE_DATE_EPOCH=epoch: "debian:" followed by the hex sha256 of the
// canonical JSON of the normalized spec, the epoch and FormatVersion.
func (s Spec) Key(epoch int64) string {
	doc := struct {
		Format int   `json:"format"`
		Epoch  int64 `json:"epoch"`
		Spec   Spec  `json:"spec"`
	}{FormatVersion, epoch, s.Normalize()}
	b, err := json.Marshal(doc)
	if err != nil {
		// Marshalling strings and ints cannot fail; fall back to %#v so the
		// key stays deterministic rather than panicking.
		b = fmt.Appendf(nil, "%#v", doc)
	}
	sum := sha256.Sum256(b)
	return "debian:" + hex.EncodeToString(sum[:])
}

// Name is a short human description for logs: "bookworm/minbase/amd64".
func (s Spec) Name() string {
	n := s.Normalize()
	name := n.Suite + "/" + n.Variant + "/" + n.Arch
	if n.Snapshot != "" {
		name += "@" + n.Snapshot
	}
	return name
}
