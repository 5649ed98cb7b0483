package gobuild

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"github.com/labbake/labbake/internal/iox"
)

// FormatVersion is mixed into every key. Bump it whenever the bytes a Spec
// builds to change for reasons the Spec does not show (other go flags, a
// different throw-away module), so that cached outputs are not reused.
const FormatVersion = 1

// The platform every program is built for: the lab's machines.
const (
	GOOS    = "linux"
	GOARCH  = "amd64"
	GOAMD64 = "v1"
)

// Platform is GOOS/GOARCH, as the keys name it.
const Platform = GOOS + "/" + GOARCH

// Spec is a Go program (or several of one module) to build: the
// `artifacts: [{go: {...}}]` part of a recipe.
type Spec struct {
	// Module is the module path, e.g. k8s.io/kubernetes.
	Module string `json:"module"`
	// Version is a semantic version tag of Module, e.g. v1.37.2.
	Version string `json:"version"`
	// Packages are the main packages to build, relative to the module
	// ("." for its root, "cmd/kubelet"); Normalize makes full import paths
	// under Module relative.
	Packages []string `json:"packages"`
	// ReplaceStaging replaces the modules that Module's go.mod replaces by
	// a directory under ./staging/ with their published versions: v0.N.M
	// for Kubernetes v1.N.M.
	ReplaceStaging bool `json:"replace_staging,omitempty"`
	// Tags are build tags.
	Tags []string `json:"tags,omitempty"`
	// LDFlags are linker flags, each one or more space-separated words
	// ("-s", "-X pkg.name=value"); -buildid= is always added last.
	LDFlags []string `json:"ldflags,omitempty"`
	// Toolchain is the Go release to build with ("go1.26.8"); empty means
	// DefaultToolchain.
	Toolchain string `json:"toolchain,omitempty"`
}

// DefaultToolchain is the Go release that built labbake.
func DefaultToolchain() string {
	v, _, _ := strings.Cut(runtime.Version(), " ")
	return v
}

var (
	// A module path element: what go accepts, without its finer rules on
	// dots and tildes (the go command checks those).
	elemRE      = regexp.MustCompile(`^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$`)
	semverRE    = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	tagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.]*$`)
	toolchainRE = regexp.MustCompile(`^go1\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)|(rc|beta)[1-9][0-9]*)?$`)
	k8sRE       = regexp.MustCompile(`^v1\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)
	platformRE  = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9]+$`)
)

// FieldError is one problem Validate finds: the field of the Spec it
// concerns, named as in the recipe ("module", "packages"), the index of the
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

// checkModule checks a module path.
func checkModule(m string) string {
	if m == "" {
		return "required: the module path, e.g. k8s.io/kubernetes"
	}
	elems := strings.Split(m, "/")
	for _, e := range elems {
		if !elemRE.MatchString(e) || e == "." || e == ".." || strings.HasSuffix(e, ".") {
			return fmt.Sprintf("%q is not a module path", m)
		}
	}
	if !strings.Contains(elems[0], ".") || strings.ToLower(elems[0]) != elems[0] {
		return fmt.Sprintf("%q is not a module path: its first element is a lower-case domain name (example.com/…)", m)
	}
	return ""
}

// checkVersion checks a module version.
func checkVersion(v string) string {
	switch {
	case v == "":
		return "required: a semantic version tag of the module, e.g. v1.2.3"
	case !semverRE.MatchString(v):
		return fmt.Sprintf("%q is not a semantic version tag (vMAJOR.MINOR.PATCH)", v)
	}
	return ""
}

// relPackage makes p relative to module: "" when it is outside.
func relPackage(module, p string) (string, string) {
	switch {
	case p == module:
		return ".", ""
	case strings.HasPrefix(p, module+"/"):
		p = strings.TrimPrefix(p, module+"/")
	case p == "." || p == "./":
		return ".", ""
	case strings.HasPrefix(p, "/"):
		return "", fmt.Sprintf("package %q: want a path relative to module %s (\".\" for its root, cmd/NAME) or an import path under it", p, module)
	default:
		p = strings.TrimPrefix(p, "./")
		first, _, _ := strings.Cut(p, "/")
		if strings.Contains(first, ".") && first != "." && first != ".." {
			return "", fmt.Sprintf("package %q is outside module %s", p, module)
		}
	}
	for _, e := range strings.Split(p, "/") {
		switch {
		case e == "..":
			return "", fmt.Sprintf("package %q is outside module %s", p, module)
		case !elemRE.MatchString(e) || e == ".":
			return "", fmt.Sprintf("package %q is not a package path", p)
		}
	}
	return p, ""
}

// Normalize fills in the default toolchain and makes every package
// relative to the module. Packages it cannot make relative are left as they
// are, for Validate to name.
func (s Spec) Normalize() Spec {
	n := s
	if n.Toolchain == "" {
		n.Toolchain = DefaultToolchain()
	}
	n.Packages = make([]string, len(s.Packages))
	for i, p := range s.Packages {
		if r, msg := relPackage(s.Module, p); msg == "" {
			n.Packages[i] = r
		} else {
			n.Packages[i] = p
		}
	}
	n.Tags = slices.Clone(s.Tags)
	n.LDFlags = slices.Clone(s.LDFlags)
	return n
}

// Validate reports every problem of s at once (joined with errors.Join),
// each a *FieldError naming its field. It is the one check of a go input:
// the recipe decoder uses it too.
func (s Spec) Validate() error {
	var errs []error
	add := func(field string, index int, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Index: index, Msg: fmt.Sprintf(format, args...)})
	}
	modOK := true
	if msg := checkModule(s.Module); msg != "" {
		add("module", -1, "%s", msg)
		modOK = false
	}
	if msg := checkVersion(s.Version); msg != "" {
		add("version", -1, "%s", msg)
	} else if s.ReplaceStaging && !k8sRE.MatchString(s.Version) {
		add("replace_staging", -1, "staging modules are published as v0.N.M for Kubernetes versions v1.N.M only, not for %s", s.Version)
	}
	if len(s.Packages) == 0 {
		add("packages", -1, "required: the main packages to build, relative to the module (\".\", cmd/NAME)")
	}
	names := map[string]int{}
	rels := map[string]int{}
	for i, p := range s.Packages {
		if !modOK {
			break
		}
		r, msg := relPackage(s.Module, p)
		if msg != "" {
			add("packages", i, "%s", msg)
			continue
		}
		if j, dup := rels[r]; dup {
			add("packages", i, "package %s is listed twice (also packages[%d])", p, j)
			continue
		}
		rels[r] = i
		name := binaryName(s.Module, r)
		if j, dup := names[name]; dup {
			add("packages", i, "package %s builds to %s, as packages[%d] does", p, name, j)
			continue
		}
		names[name] = i
	}
	for i, t := range s.Tags {
		if !tagRE.MatchString(t) {
			add("tags", i, "%q is not a build tag (letters, digits, _ and .)", t)
		}
	}
	for i, f := range s.LDFlags {
		switch {
		case strings.TrimSpace(f) == "":
			add("ldflags", i, "empty")
		case strings.ContainsAny(f, "\n\r\x00"):
			add("ldflags", i, "%q holds a line break or NUL: each item is one line of linker flags", f)
		case slices.ContainsFunc(strings.Fields(f), func(w string) bool {
			return w == "-buildid" || strings.HasPrefix(w, "-buildid=") || w == "--buildid" || strings.HasPrefix(w, "--buildid=")
		}):
			add("ldflags", i, "labbake sets -buildid= itself (an empty build ID makes the binary reproducible)")
		}
	}
	if s.Toolchain != "" && !toolchainRE.MatchString(s.Toolchain) {
		add("toolchain", -1, "%q is not a Go release (go1.N.M)", s.Toolchain)
	}
	return errors.Join(errs...)
}

// binaryName is the file name go build gives the main package rel of
// module: its last path element, or the one before a major version suffix.
func binaryName(module, rel string) string {
	p := module
	if rel != "." {
		p = module + "/" + rel
	}
	elems := strings.Split(p, "/")
	last := elems[len(elems)-1]
	if len(elems) > 1 && isMajorSuffix(last) {
		return elems[len(elems)-2]
	}
	return last
}

func isMajorSuffix(e string) bool {
	if len(e) < 2 || e[0] != 'v' || e[1] == '0' {
		return false
	}
	return strings.Trim(e[1:], "0123456789") == ""
}

// ImportPaths are the full import paths of the packages, in Spec order.
func (s Spec) ImportPaths() []string {
	out := make([]string, len(s.Packages))
	for i, p := range s.Normalize().Packages {
		if p == "." {
			out[i] = s.Module
		} else {
			out[i] = s.Module + "/" + p
		}
	}
	return out
}

// Names are the binaries' file names, in Spec order.
func (s Spec) Names() []string {
	n := s.Normalize()
	out := make([]string, len(n.Packages))
	for i, p := range n.Packages {
		out[i] = binaryName(s.Module, p)
	}
	return out
}

// Name is how plans name the input: MODULE@VERSION/PKG, the packages
// separated by spaces when there are several.
func (s Spec) Name() string {
	var parts []string
	for _, p := range s.Normalize().Packages {
		if p == "." {
			parts = append(parts, s.Module+"@"+s.Version)
		} else {
			parts = append(parts, s.Module+"@"+s.Version+"/"+p)
		}
	}
	return strings.Join(parts, " ")
}

// Key is a lock key of a go input, parsed.
type Key struct {
	// Kind is "go" (the output's digest) or "gosum" (the go.sum's).
	Kind      string
	Module    string
	Version   string
	Packages  []string // relative to the module, sorted
	Toolchain string
	Staging   bool   // gosum only: ReplaceStaging
	Platform  string // go only: GOOS/GOARCH
	Options   string // go only: the digest of the build options
}

// The kinds of key.
const (
	KindBinary = "go"
	KindSum    = "gosum"
)

// String renders the key: "gosum MODULE@VERSION PKG[,PKG…] TOOLCHAIN
// [staging]" or "go MODULE@VERSION PKG[,PKG…] TOOLCHAIN GOOS/GOARCH
// sha256:OPTIONS".
func (k Key) String() string {
	f := []string{k.Kind, k.Module + "@" + k.Version, strings.Join(k.Packages, ","), k.Toolchain}
	switch k.Kind {
	case KindSum:
		if k.Staging {
			f = append(f, "staging")
		}
	case KindBinary:
		f = append(f, k.Platform, k.Options)
	}
	return strings.Join(f, " ")
}

// sortedPackages are the normalized packages, sorted: the order of the
// recipe's list changes neither the go.sum nor the output.
func (s Spec) sortedPackages() []string {
	p := slices.Clone(s.Normalize().Packages)
	slices.Sort(p)
	return p
}

// SumKey is the lock key of the throw-away module's go.sum: the module,
// the packages, the toolchain and whether staging modules are replaced
// decide it.
func (s Spec) SumKey() Key {
	n := s.Normalize()
	return Key{Kind: KindSum, Module: n.Module, Version: n.Version, Packages: s.sortedPackages(), Toolchain: n.Toolchain, Staging: n.ReplaceStaging}
}

// options is what the build flags of a Spec hash to in BinaryKey.
type options struct {
	Format         int      `json:"format"`
	Tags           []string `json:"tags"`
	LDFlags        []string `json:"ldflags"`
	ReplaceStaging bool     `json:"replace_staging"`
	GOAMD64        string   `json:"goamd64"`
}

// BinaryKey is the lock key of the output: SumKey's fields, the platform
// and a digest of the build options (tags, linker flags, staging, labbake's
// build format).
func (s Spec) BinaryKey() Key {
	n := s.Normalize()
	o := options{Format: FormatVersion, Tags: n.Tags, LDFlags: n.LDFlags, ReplaceStaging: n.ReplaceStaging, GOAMD64: GOAMD64}
	if o.Tags == nil {
		o.Tags = []string{}
	}
	if o.LDFlags == nil {
		o.LDFlags = []string{}
	}
	b, _ := json.Marshal(o) // strings and a bool: cannot fail
	return Key{Kind: KindBinary, Module: n.Module, Version: n.Version, Packages: s.sortedPackages(), Toolchain: n.Toolchain,
		Platform: Platform, Options: digestOf(b)}
}

// BuildKey is the name of the output in the cache: the digest of
// everything that goes into it, BinaryKey and the go.sum's digest.
func (s Spec) BuildKey(goSum string) string {
	return "gobuild " + digestOf([]byte(fmt.Sprintf("labbake go build %d\n%s\n%s\n", FormatVersion, s.BinaryKey(), goSum)))
}

// modulesKey names the module index of a go.sum in the cache.
func modulesKey(goSum string) string { return "gomodules " + goSum }

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParseKey checks a lock key of a go input, strictly: exactly what
// Key.String writes, with every field well-formed (module path, semantic
// version, packages relative to the module and sorted, a Go release, a
// platform and a sha256 digest).
func ParseKey(s string) (Key, error) {
	f := strings.Split(s, " ")
	var k Key
	if len(f) < 4 {
		return k, errors.New("want KIND MODULE@VERSION PACKAGES TOOLCHAIN …")
	}
	k.Kind = f[0]
	switch {
	case k.Kind == KindSum && (len(f) == 4 || len(f) == 5 && f[4] == "staging"):
		k.Staging = len(f) == 5
	case k.Kind == KindSum:
		return k, errors.New(`want "gosum MODULE@VERSION PACKAGES TOOLCHAIN [staging]"`)
	case k.Kind == KindBinary && len(f) == 6:
		k.Platform, k.Options = f[4], f[5]
		if !platformRE.MatchString(k.Platform) {
			return k, fmt.Errorf("%q is not GOOS/GOARCH", k.Platform)
		}
		if _, err := iox.ParseDigest(k.Options); err != nil {
			return k, fmt.Errorf("%q is not a sha256 digest", k.Options)
		}
	case k.Kind == KindBinary:
		return k, errors.New(`want "go MODULE@VERSION PACKAGES TOOLCHAIN GOOS/GOARCH sha256:OPTIONS"`)
	default:
		return k, fmt.Errorf("unknown kind %q", k.Kind)
	}
	i := strings.LastIndexByte(f[1], '@')
	if i < 0 {
		return k, fmt.Errorf("%q is not MODULE@VERSION", f[1])
	}
	k.Module, k.Version = f[1][:i], f[1][i+1:]
	if msg := checkModule(k.Module); msg != "" {
		return k, errors.New(msg)
	}
	if msg := checkVersion(k.Version); msg != "" {
		return k, errors.New(msg)
	}
	k.Packages = strings.Split(f[2], ",")
	for _, p := range k.Packages {
		r, msg := relPackage(k.Module, p)
		if msg != "" {
			return k, errors.New(msg)
		}
		if r != p {
			return k, fmt.Errorf("package %q: want it relative to the module, as %q", p, r)
		}
	}
	if !slices.IsSorted(k.Packages) || len(slices.Compact(slices.Clone(k.Packages))) != len(k.Packages) {
		return k, fmt.Errorf("packages %q: want them sorted, each once", f[2])
	}
	k.Toolchain = f[3]
	if !toolchainRE.MatchString(k.Toolchain) {
		return k, fmt.Errorf("%q is not a Go release (go1.N.M)", k.Toolchain)
	}
	return k, nil
}

// stagingVersion is the published version of a Kubernetes staging module:
// v1.37.2 → v0.37.2.
func stagingVersion(k8s string) string { return "v0." + strings.TrimPrefix(k8s, "v1.") }

// cleanRel reports whether p is a clean relative slash path without ".."
// elements.
func cleanRel(p string) bool {
	return p != "" && path.Clean(p) == p && !strings.HasPrefix(p, "/") && p != "." &&
		!slices.Contains(strings.Split(p, "/"), "..")
}
