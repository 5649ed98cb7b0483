package debian

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want []string // substrings, each must appear; nil means valid
		n    int      // number of problems if not len(want)
	}{
		{name: "minimal", spec: Spec{Suite: "bookworm"}},
		{name: "full", spec: Spec{
			Suite: "trixie", Mirror: "http://deb.debian.org/debian/", Components: []string{"main", "non-free-firmware"},
			Variant: "important", Packages: []string{"linux-image-amd64", "libc6:amd64", "systemd=252.38-1~deb12u1", "cloud-init/bookworm-backports"},
			Snapshot: "20250520T000000Z", Extra: []string{"trixie-updates", "deb http://deb.debian.org/debian-security trixie-security main"},
			Arch: "arm64",
		}},
		{name: "every variant", spec: Spec{Suite: "sid", Variant: "standard"}},
		{name: "mirror+file", spec: Spec{Suite: "bookworm", Mirror: "mirror+file:///etc/apt/mirrors.txt"}},
		{name: "empty", spec: Spec{}, want: []string{"suite: required"}},
		{name: "blank suite", spec: Spec{Suite: "  "}, want: []string{"suite: required"}},
		{name: "all at once", spec: Spec{
			Suite: "book worm", Mirror: "ftp://example.org/debian", Components: []string{"Main"},
			Variant: "fat", Packages: []string{"less", "bad,pkg", "-flag"},
			Snapshot: "2025-05-20", Extra: []string{"deb http://x", "weird suite!"}, Arch: "AMD64",
		}, want: []string{
			`suite: invalid suite name "book worm"`,
			`mirror: "ftp://example.org/debian": want an http, https, file or copy URL`,
			`components[0]: invalid component "Main"`,
			`variant: unknown variant "fat" (one of extract, custom, essential, apt, required, minbase, buildd, important, debootstrap, standard)`,
			`packages[1]: invalid package "bad,pkg"`,
			`packages[2]: invalid package "-flag"`,
			`snapshot: want YYYYMMDDTHHMMSSZ, got "2025-05-20"`,
			`extra[0]: "deb http://x"`,
			`extra[1]: "weird suite!"`,
			`arch: invalid architecture "AMD64"`,
		}},
		{name: "snapshot impossible date", spec: Spec{Suite: "bookworm", Snapshot: "20251340T000000Z"}, want: []string{"snapshot: want YYYYMMDDTHHMMSSZ"}},
		{name: "snapshot lowercase", spec: Spec{Suite: "bookworm", Snapshot: "20250520t000000z"}, want: []string{"snapshot: want YYYYMMDDTHHMMSSZ"}},
		{name: "variant dash alias", spec: Spec{Suite: "bookworm", Variant: "-"}, want: []string{"variant: unknown variant \"-\""}},
		{name: "mirror without host", spec: Spec{Suite: "bookworm", Mirror: "http:///debian"}, want: []string{"mirror: ", "has no host"}, n: 1},
		{name: "mirror with space", spec: Spec{Suite: "bookworm", Mirror: "http://a b/debian"}, want: []string{"mirror: ", "white space"}, n: 1},
		{name: "extra newline", spec: Spec{Suite: "bookworm", Extra: []string{"deb http://a bookworm main\ndeb http://evil x y"}}, want: []string{"extra[0]: "}},
		{name: "empty entries", spec: Spec{Suite: "bookworm", Packages: []string{"less", " "}, Extra: []string{""}, Components: []string{""}},
			want: []string{`packages[1]: invalid package ""`, `extra[0]: empty`, `components[0]: invalid component ""`}},
		{name: "dash suite", spec: Spec{Suite: "--help"}, want: []string{"suite: invalid suite name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Validate() error lacks %q; got:\n%s", w, msg)
				}
			}
			// One line per problem: every problem reported, none twice.
			n := tt.n
			if n == 0 {
				n = len(tt.want)
			}
			if got := len(err.(interface{ Unwrap() []error }).Unwrap()); got != n {
				t.Errorf("Validate() reported %d problems, want %d:\n%s", got, n, msg)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	in := Spec{
		Suite:    " bookworm ",
		Packages: []string{"systemd", "less", " less", "", "ca-certificates", "systemd"},
		Extra:    []string{"bookworm-updates", "deb  http://a \t  b c", "bookworm-security", "bookworm-updates"},
	}
	keep := slices.Clone(in.Packages)
	got := in.Normalize()
	want := Spec{
		Suite:      "bookworm",
		Components: []string{"main"},
		Variant:    "minbase",
		Packages:   []string{"ca-certificates", "less", "systemd"},
		Extra:      []string{"bookworm-security", "bookworm-updates", "deb http://a b c"},
		Arch:       "amd64",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Normalize() =\n%#v\nwant\n%#v", got, want)
	}
	if !slices.Equal(in.Packages, keep) {
		t.Errorf("Normalize modified its receiver's Packages: %q", in.Packages)
	}
	if again := got.Normalize(); !reflect.DeepEqual(again, got) {
		t.Errorf("Normalize is not idempotent: %#v", again)
	}
}

func TestKey(t *testing.T) {
	base := Spec{Suite: "bookworm", Packages: []string{"less", "systemd", "ca-certificates"}}
	k := base.Key(1700000000)
	if !regexp.MustCompile(`^debian:[0-9a-f]{64}$`).MatchString(k) {
		t.Fatalf("Key() = %q, want debian:<64 hex>", k)
	}

	same := []Spec{
		{Suite: "bookworm", Packages: []string{"systemd", "ca-certificates", "less"}},
		{Suite: "bookworm", Packages: []string{"less", "less", "systemd", "ca-certificates"}},
		{Suite: "bookworm ", Packages: []string{"systemd", "ca-certificates", "less"}, Variant: "minbase", Arch: "amd64", Components: []string{"main"}},
		{Suite: "bookworm", Packages: []string{"systemd", "ca-certificates", "less"}, Components: []string{"main", "main"}},
	}
	for i, s := range same {
		if got := s.Key(1700000000); got != k {
			t.Errorf("same[%d].Key() = %s, want %s", i, got, k)
		}
	}
	if got := base.Key(1700000001); got == k {
		t.Errorf("Key ignores the epoch")
	}

	changes := map[string]func(*Spec){
		"suite":      func(s *Spec) { s.Suite = "trixie" },
		"mirror":     func(s *Spec) { s.Mirror = "http://mirror.example/debian" },
		"components": func(s *Spec) { s.Components = []string{"main", "contrib"} },
		"variant":    func(s *Spec) { s.Variant = "buildd" },
		"packages":   func(s *Spec) { s.Packages = append(slices.Clone(s.Packages), "curl") },
		"snapshot":   func(s *Spec) { s.Snapshot = "20250520T000000Z" },
		"extra":      func(s *Spec) { s.Extra = []string{"bookworm-updates"} },
		"arch":       func(s *Spec) { s.Arch = "arm64" },
	}
	seen := map[string]string{k: "base"}
	for name, change := range changes {
		s := base
		change(&s)
		got := s.Key(1700000000)
		if prev, dup := seen[got]; dup {
			t.Errorf("changing %s gives the key of %s: %s", name, prev, got)
		}
		seen[got] = name
	}
}

// TestKeyGolden pins the key of one spec so that an accidental change of the
// canonical form (field names, order, version) shows in review.
func TestKeyGolden(t *testing.T) {
	s := Spec{Suite: "bookworm", Packages: []string{"less"}}
	const want = "debian:735fc40c9fb7aa37c9425d7256b5e8afda8b3d47f0f790e7f65d3641fcca7112"
	if got := s.Key(0); got != want {
		t.Errorf("Key() = %s, want %s (if the change is deliberate, bump FormatVersion and update want)", got, want)
	}
}

func TestValidateErrorsJoined(t *testing.T) {
	err := Spec{Variant: "x", Snapshot: "y"}.Validate()
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 3 {
		t.Fatalf("Validate() = %v, want 3 joined errors", err)
	}
	// Each names its field, so that the recipe can place it.
	err = Spec{Suite: "trixie", Packages: []string{"ok", "Bad!"}, Extra: []string{"deb http://x"}}.Validate()
	var got []FieldError
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			var fe *FieldError
			if !errors.As(e, &fe) {
				t.Fatalf("%v is a %T, not a *FieldError", e, e)
			}
			got = append(got, *fe)
		}
	}
	want := []FieldError{
		{Field: "packages", Index: 1, Msg: `invalid package "Bad!" (want name, name=version or name/release)`},
		{Field: "extra", Index: 0, Msg: `"deb http://x": want "deb URI SUITE [COMPONENT...]"`},
	}
	if !slices.Equal(got, want) {
		t.Errorf("field errors = %+v, want %+v", got, want)
	}
}

func TestName(t *testing.T) {
	if got, want := (Spec{Suite: "trixie", Snapshot: "20250520T000000Z"}).Name(), "trixie/minbase/amd64@20250520T000000Z"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
}
