package source

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/iox"
)

// formatSums writes sums as sha256sum does, escaping names that hold a
// backslash, CR or LF.
func formatSums(s Sums) string {
	if len(s.Sums) == 1 && s.Sums[0].Name == "" {
		return strings.TrimPrefix(s.Sums[0].Digest, "sha256:") + "\n"
	}
	var b strings.Builder
	for _, sum := range s.Sums {
		name := sum.Name
		if strings.ContainsAny(name, "\\\n\r") {
			name = strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`).Replace(name)
			b.WriteString(`\`)
		}
		b.WriteString(strings.TrimPrefix(sum.Digest, "sha256:") + "  " + name + "\n")
	}
	return b.String()
}

func FuzzParseChecksum(f *testing.F) {
	files, _ := filepath.Glob("testdata/checksums/*")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	h := strings.Repeat("0123456789abcdef", 4)
	for _, s := range []string{
		"", h, h + "  -\n", h + " *a\n", `\` + h + `  a\\b\n` + "\n", "SHA256 (x) = " + h,
		"SHA256(x)= " + h + "\r\n", "sha256 ()) = " + h, h + "\t\t\n", "#" + h + "\n" + h + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := ParseChecksums(data)
		lines := strings.Count(string(data), "\n") + 1
		if len(s.Sums)+s.Skipped > lines {
			t.Fatalf("%d sums and %d skipped from %d lines", len(s.Sums), s.Skipped, lines)
		}
		for _, sum := range s.Sums {
			if _, err := iox.ParseDigest(sum.Digest); err != nil {
				t.Fatal(err)
			}
			if sum.Name == "" && len(s.Sums) != 1 {
				t.Fatalf("a lone sum among %d", len(s.Sums))
			}
			if sum.Name != "" && strings.TrimSpace(sum.Name) == "" {
				t.Fatalf("blank name %q", sum.Name)
			}
			d, err := s.Lookup(sum.Name)
			if err != nil {
				t.Fatalf("Lookup(%q): %v", sum.Name, err)
			}
			if sum.Name != "" {
				want := strings.TrimPrefix(sum.Name, "./")
				ok := false
				for _, o := range s.Sums {
					ok = ok || o.Digest == d && strings.TrimPrefix(o.Name, "./") == want
				}
				if !ok {
					t.Fatalf("Lookup(%q) = %s, which no sum of that name has", sum.Name, d)
				}
			}
		}
		// Written out as sha256sum would, the sums read back the same.
		if len(s.Sums) == 1 && s.Sums[0].Name == "-" {
			return // a lone sum once alone
		}
		again := ParseChecksums([]byte(formatSums(s)))
		if again.Skipped != 0 || !reflect.DeepEqual(again.Sums, s.Sums) {
			t.Fatalf("round trip:\n%q\n→ %+v\n→ %q\n→ %+v", data, s.Sums, formatSums(s), again)
		}
	})
}
