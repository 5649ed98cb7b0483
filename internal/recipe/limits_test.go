package recipe

import (
	"fmt"
	"strings"
	"testing"
)

// What a recipe may ask for is bounded, with an error at the place that
// passes the bound.
func TestRecipeLimits(t *testing.T) {
	many := func(n int, line string) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, line, i)
		}
		return b.String()
	}
	big := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"too many files", map[string]string{"recipes/master.yaml": "base: {tar: rootfs.tar}\nfiles:\n" + many(maxEntries+1, "  - {path: /f%d, content: x}\n")},
			"recipes/master.yaml:3:3: files: 10001 entries: a recipe may hold at most 10000 (extends included)"},
		{"too many with extends", map[string]string{
			"recipes/common.yaml": "base: {tar: rootfs.tar}\nchecks:\n  files:\n" + many(6000, "    - /c%d\n"),
			"recipes/master.yaml": "extends: common\nchecks:\n  files:\n" + many(6000, "    - /m%d\n")},
			"recipes/master.yaml:4:5: checks.files: 12000 entries: a recipe may hold at most 10000 (extends included)"},
		{"recipe file too large", map[string]string{"recipes/master.yaml": "base: {tar: rootfs.tar}\n#" + strings.Repeat("x", maxYAMLFile)},
			"recipes/master.yaml: reading recipe: larger than 4MiB, the most labbake reads"},
		{"rendered recipe too large", map[string]string{"recipes/master.yaml": "base: {tar: rootfs.tar}\n#{{ repeat 5000000 \"x\" }}\n"},
			"recipes/master.yaml:1:1: template: output is larger than 4MiB"},
		{"inline units", map[string]string{
			"recipes/master.yaml": "base: {tar: rootfs.tar}\nunits:\n" + many(5, "  - {name: u%d.service}\n"),
			"units/u0.service":    strings.Repeat(big, 4), "units/u1.service.tmpl": "{{ repeat 16000000 \"x\" }}", "units/u2.service.tmpl": "{{ repeat 16000000 \"x\" }}",
			"units/u3.service.tmpl": "{{ repeat 16000000 \"x\" }}", "units/u4.service.tmpl": "{{ repeat 16000000 \"x\" }}"},
			"recipes/master.yaml:7:12: units[4].name: the recipe's inline content (files, units and templates) passes 64MiB here: put large files in an overlay"},
		{"inline templates", map[string]string{
			"recipes/master.yaml": "base: {tar: rootfs.tar}\noverlays: [o]\n",
			"overlays/o/a.tmpl":   "{{ repeat 15000000 \"x\" }}", "overlays/o/b.tmpl": "{{ repeat 15000000 \"x\" }}",
			"overlays/o/c.tmpl": "{{ repeat 15000000 \"x\" }}", "overlays/o/d.tmpl": "{{ repeat 15000000 \"x\" }}", "overlays/o/e.tmpl": "{{ repeat 15000000 \"x\" }}"},
			"recipes/master.yaml:2:12: overlays[0]: the recipe's inline content (files, units and templates) passes 64MiB here: put large files in an overlay"},
		{"unit file too large", map[string]string{
			"recipes/master.yaml": "base: {tar: rootfs.tar}\nunits: [{name: a.service}]\n",
			"units/a.service":     strings.Repeat(big, 17)},
			"recipes/master.yaml:2:16: units[0].name: reading units/a.service: larger than 16MiB, the most labbake reads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.files["lab.yaml"] = miniLab
			tc.files["rootfs.tar"] = "x"
			writeLab(t, dir, tc.files)
			lab, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = lab.Recipe("master")
			if err == nil || err.Error() != tc.want {
				t.Errorf("Recipe = %.300v\nwant %s", err, tc.want)
			}
		})
	}
}
