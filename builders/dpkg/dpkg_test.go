package dpkg

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/tree"
)

// status is a small status file: a package with a versioned source, one
// whose source is named without a version, one of two architectures, one
// removed with its configuration left, one purged, one half-configured,
// and a description with continuation lines.
const status = `Package: zlib1g
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: zlib (1:1.3.dfsg-3.1)
Version: 1:1.3.dfsg-3.1+b1
Description: compression library - runtime
 zlib is a library implementing the deflate compression method found
 in gzip and PKZIP.
 .
 This package includes the shared library.

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.41-12

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.41-12

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: gone
Status: purge ok not-installed
Architecture: amd64

Package: systemd
Status: install ok half-configured
Architecture: amd64
Version: 257.9-1~deb13u1
`

func TestReadStatus(t *testing.T) {
	got, err := ReadStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{
		{Name: "libc6", Version: "2.41-12", Architecture: "amd64", Source: "glibc", SourceVersion: "2.41-12"},
		{Name: "libc6", Version: "2.41-12", Architecture: "i386", Source: "libc6", SourceVersion: "2.41-12"},
		{Name: "systemd", Version: "257.9-1~deb13u1", Architecture: "amd64", Source: "systemd", SourceVersion: "257.9-1~deb13u1"},
		{Name: "zlib1g", Version: "1:1.3.dfsg-3.1+b1", Architecture: "amd64", Source: "zlib", SourceVersion: "1:1.3.dfsg-3.1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// A status file some tool other than dpkg wrote may lack fields: what it
// names is listed with what it says, a package listed twice once.
func TestReadStatusSparse(t *testing.T) {
	got, err := ReadStatus(strings.NewReader("Package: a\n\nStatus: install ok installed\nVersion: 1\n\nPackage: b\nStatus: installed\nVersion: 2\n\nPackage: c\nStatus: purge ok not-installed\n\nPackage: b\nVersion: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{{Name: "a", Source: "a"}, {Name: "b", Version: "2", Source: "b", SourceVersion: "2"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestReadStatusErrors(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"not a field", "Package: a\nnonsense\n", `line 2: "nonsense" is not a field`},
		{"stray continuation", " continued\n", "line 1: a continuation line outside a field"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadStatus(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one with %q", err, tt.want)
			}
		})
	}
}

func TestReadParagraphs(t *testing.T) {
	in := "# a comment\r\nA: 1\r\nB:  two words \n  more\n\tand more\n\n\n\nA: 3\n"
	var got []Paragraph
	err := ReadParagraphs(strings.NewReader(in), func(p Paragraph) error {
		got = append(got, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Paragraph{{"A": "1", "B": "two words\nmore\nand more"}, {"A": "3"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestInstalled(t *testing.T) {
	blobs := filepath.Join(t.TempDir(), "blobs")
	for _, tt := range []struct {
		name  string
		files []tree.File
		link  string // a hardlink to add at StatusFile, to this path
		want  int
	}{
		{name: "no database", files: []tree.File{{Path: "/etc/hostname", Content: []byte("x\n")}}},
		{name: "status", files: []tree.File{{Path: "/var/lib/dpkg/status", Content: []byte(status)}}, want: 4},
		{
			name: "through a symlinked /var",
			files: []tree.File{
				{Path: "/srv/var/lib/dpkg/status", Content: []byte(status)},
				{Path: "/var", Symlink: "srv/var"},
			},
			want: 4,
		},
		{name: "a hardlink", files: []tree.File{{Path: "/var/lib/dpkg/status-old", Content: []byte(status)}}, link: "/var/lib/dpkg/status-old", want: 4},
		{name: "a directory", files: []tree.File{{Path: "/var/lib/dpkg/status/x", Content: []byte(status)}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := tree.New(time.Unix(1.7e9, 0))
			if err := tr.AddFiles(tt.files, blobs); err != nil {
				t.Fatal(err)
			}
			if tt.link != "" {
				if err := tr.Add(tree.Entry{Path: StatusFile, Type: tree.Hardlink, Linkname: tt.link}); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Installed(tr)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Errorf("%d packages, want %d: %+v", len(got), tt.want, got)
			}
		})
	}
}

func TestInstalledBadStatus(t *testing.T) {
	tr := tree.New(time.Unix(1.7e9, 0))
	if err := tr.AddFiles([]tree.File{{Path: "/var/lib/dpkg/status", Content: []byte("Package: a\nnonsense\n")}}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	_, err := Installed(tr)
	if err == nil || !strings.Contains(err.Error(), "/var/lib/dpkg/status: line 2") {
		t.Errorf("error %v, want one naming the file and the line", err)
	}
}
