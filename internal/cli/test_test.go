package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPickFirmware(t *testing.T) {
	dir := t.TempDir()
	manifest := func(name, methods string) string {
		p := filepath.Join(dir, name+".manifest.json")
		if err := os.WriteFile(p, []byte(`{"role":"x","boot":{"methods":`+methods+`}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	both, bios, none := manifest("both", `["uefi","bios"]`), manifest("bios", `["bios"]`), manifest("none", `[]`)
	for _, tc := range []struct {
		manifest, asked, want, err string
		usage                      bool
	}{
		{both, "", "uefi", "", false},
		{both, "bios", "bios", "", false},
		{bios, "", "bios", "", false},
		{bios, "uefi", "", "--firmware uefi: the image boots only with bios", true},
		{none, "", "", "disk.boot: [] and has no boot loader", true},
		{filepath.Join(dir, "missing.manifest.json"), "", "uefi", "", false},
		{filepath.Join(dir, "missing.manifest.json"), "bios", "bios", "", false},
	} {
		got, err := pickFirmware(tc.manifest, tc.asked)
		if tc.err != "" {
			var ue *UsageError
			if err == nil || !strings.Contains(err.Error(), tc.err) || errors.As(err, &ue) != tc.usage {
				t.Errorf("%s, %q: err = %v, want a usage error with %q", filepath.Base(tc.manifest), tc.asked, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s, %q: %q, %v; want %q", filepath.Base(tc.manifest), tc.asked, got, err, tc.want)
		}
	}
}
