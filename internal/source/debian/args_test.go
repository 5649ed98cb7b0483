package debian

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestArgsGolden(t *testing.T) {
	b := &Builder{Mode: "root"}
	spec := Spec{Suite: "bookworm", Packages: []string{"systemd", "less", "less"}, Components: []string{"main", "contrib"}}
	got := b.Args(spec, "/tmp/x/base.tar")
	want := []string{
		"mmdebstrap",
		"--variant=minbase",
		"--mode=root",
		"--format=tar",
		"--architectures=amd64",
		"--components=contrib,main",
		"--include=less,systemd",
		`--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*`,
		`--customize-hook=if [ -e "$1"/etc/machine-id ]; then : > "$1"/etc/machine-id; fi`,
		`--customize-hook=rm -f "$1"/var/lib/dbus/machine-id`,
		`--customize-hook=printf 'localhost\n' > "$1"/etc/hostname && chmod 0644 "$1"/etc/hostname`,
		`--customize-hook=if [ ! -L "$1"/etc/resolv.conf ]; then rm -f "$1"/etc/resolv.conf; fi`,
		`--customize-hook=if [ ! -e "$1"/etc/hosts ]; then printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$1"/etc/hosts; fi`,
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/info/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/lintian/*",
		"--",
		"bookworm",
		"/tmp/x/base.tar",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Args() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if again := b.Args(spec, "/tmp/x/base.tar"); !slices.Equal(again, got) {
		t.Errorf("Args() is not deterministic")
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name    string
		b       Builder
		spec    Spec
		has     []string // must appear
		hasNot  []string // must not appear (prefix match)
		sources []string // what follows suite and output
	}{
		{
			name:   "defaults",
			spec:   Spec{Suite: "trixie"},
			has:    []string{"--variant=minbase", "--format=tar", "--architectures=amd64", "--components=main"},
			hasNot: []string{"--include=", "--aptopt="},
		},
		{
			name: "program and mode",
			b:    Builder{Mmdebstrap: "/opt/mm/mmdebstrap", Mode: "unshare"},
			spec: Spec{Suite: "trixie", Variant: "apt", Arch: "arm64"},
			has:  []string{"--mode=unshare", "--variant=apt", "--architectures=arm64"},
		},
		{
			name: "snapshot",
			spec: Spec{Suite: "bookworm", Snapshot: "20250520T000000Z", Extra: []string{"bookworm-security", "bookworm-updates"}},
			has:  []string{`--aptopt=Acquire::Check-Valid-Until "false"`},
			sources: []string{
				"deb http://snapshot.debian.org/archive/debian/20250520T000000Z bookworm main",
				"deb http://snapshot.debian.org/archive/debian-security/20250520T000000Z bookworm-security main",
				"deb http://snapshot.debian.org/archive/debian/20250520T000000Z bookworm-updates main",
			},
		},
		{
			name:    "snapshot alone",
			spec:    Spec{Suite: "bookworm", Snapshot: "20250520T000000Z"},
			sources: []string{"deb http://snapshot.debian.org/archive/debian/20250520T000000Z bookworm main"},
		},
		{
			name: "mirror wins over snapshot",
			spec: Spec{Suite: "bookworm", Snapshot: "20250520T000000Z", Mirror: "http://snap.local/debian/20250520T000000Z"},
			has:  []string{`--aptopt=Acquire::Check-Valid-Until "false"`},
			sources: []string{
				"deb http://snap.local/debian/20250520T000000Z bookworm main",
			},
		},
		{
			name:    "mirror only",
			spec:    Spec{Suite: "bookworm", Mirror: "http://10.0.0.1:3142/debian/", Components: []string{"main", "non-free-firmware"}},
			hasNot:  []string{"--aptopt="},
			sources: []string{"deb http://10.0.0.1:3142/debian/ bookworm main non-free-firmware"},
		},
		{
			name: "mirror like deb.debian.org serves security next door",
			spec: Spec{Suite: "bookworm", Mirror: "http://10.0.0.1:3142/debian/", Extra: []string{"bookworm-updates", "bookworm-security"}},
			sources: []string{
				"deb http://10.0.0.1:3142/debian/ bookworm main",
				"deb http://10.0.0.1:3142/debian-security bookworm-security main",
				"deb http://10.0.0.1:3142/debian/ bookworm-updates main",
			},
		},
		{
			name: "other mirror serves security itself",
			spec: Spec{Suite: "bookworm", Mirror: "https://mirror.example/all", Extra: []string{"bookworm-security"}},
			sources: []string{
				"deb https://mirror.example/all bookworm main",
				"deb https://mirror.example/all bookworm-security main",
			},
		},
		{
			name: "extra on the default mirror, full lines kept",
			spec: Spec{Suite: "bookworm", Extra: []string{"bookworm-updates", "bookworm-security", "deb [trusted=yes] file:///srv/repo ./"}},
			sources: []string{
				"deb http://deb.debian.org/debian bookworm main",
				"deb http://deb.debian.org/debian-security bookworm-security main",
				"deb http://deb.debian.org/debian bookworm-updates main",
				"deb [trusted=yes] file:///srv/repo ./",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.spec.Validate(); err != nil {
				t.Fatalf("spec is invalid: %v", err)
			}
			args := tt.b.Args(tt.spec, "/out/base.tar")
			wantProg := tt.b.Mmdebstrap
			if wantProg == "" {
				wantProg = "mmdebstrap"
			}
			if args[0] != wantProg {
				t.Errorf("argv[0] = %q, want %q", args[0], wantProg)
			}
			for _, h := range tt.has {
				if !slices.Contains(args, h) {
					t.Errorf("Args() lacks %q:\n%s", h, strings.Join(args, "\n"))
				}
			}
			for _, h := range tt.hasNot {
				if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, h) }) {
					t.Errorf("Args() has %q:\n%s", h, strings.Join(args, "\n"))
				}
			}
			for _, h := range Hooks() {
				if !slices.Contains(args, "--customize-hook="+h) {
					t.Errorf("Args() lacks hook %q", h)
				}
			}
			// Positional part: "--" SUITE OUTPUT [SOURCES...]
			i := slices.Index(args, "--")
			if i < 0 || len(args) < i+3 {
				t.Fatalf("Args() has no positional part: %q", args)
			}
			if args[i+1] != tt.spec.Normalize().Suite || args[i+2] != "/out/base.tar" {
				t.Errorf("positional = %q, want suite and output", args[i+1:])
			}
			if got := args[i+3:]; !slices.Equal(got, tt.sources) && (len(got) != 0 || len(tt.sources) != 0) {
				t.Errorf("sources =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.sources, "\n"))
			}
			// Options all come before the positional part.
			for _, a := range args[i+1:] {
				if strings.HasPrefix(a, "--") {
					t.Errorf("option %q after the positional arguments", a)
				}
			}
		})
	}
}

func TestArgsAutoMode(t *testing.T) {
	want := "--mode=unshare"
	if os.Geteuid() == 0 {
		want = "--mode=root"
	}
	if args := (&Builder{}).Args(Spec{Suite: "bookworm"}, "o.tar"); !slices.Contains(args, want) {
		t.Errorf("Args() lacks %s: %q", want, args)
	}
}

func TestTailWriter(t *testing.T) {
	var progress strings.Builder
	w := newTailWriter(3, &progress)
	_, _ = w.Write([]byte("one\ntw"))
	_, _ = w.Write([]byte("o\nthree\r\nfo"))
	_, _ = w.Write([]byte("ur\nbar 10%\rbar 100%\nlast"))
	w.Flush()
	if got, want := w.String(), "four\nbar 100%\nlast"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := progress.String(), "one\ntwo\nthree\nfour\nbar 100%\nlast\n"; got != want {
		t.Errorf("progress = %q, want %q", got, want)
	}
	if got := newTailWriter(3, nil).String(); got != "(no output)" {
		t.Errorf("empty String() = %q", got)
	}
}

// TestArgsDocs: documentation is left out unless the spec keeps it.
func TestArgsDocs(t *testing.T) {
	b := &Builder{Mode: "root"}
	for _, docs := range []bool{false, true} {
		args := strings.Join(b.Args(Spec{Suite: "trixie", Docs: docs}, "/tmp/base.tar"), " ")
		if got := strings.Contains(args, "--dpkgopt=path-exclude=/usr/share/doc/*"); got == docs {
			t.Errorf("docs=%v: args %s", docs, args)
		}
	}
	if (Spec{Suite: "trixie"}).Normalize().Key(0) == (Spec{Suite: "trixie", Docs: true}).Normalize().Key(0) {
		t.Error("docs does not change the base's key")
	}
}
