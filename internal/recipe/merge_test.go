package recipe

import (
	"slices"
	"testing"
)

func TestMerge(t *testing.T) {
	dir := t.TempDir()
	writeLab(t, dir, map[string]string{
		"lab.yaml":        miniLab,
		"rootfs.tar":      "x",
		"tree/etc/motd":   "x",
		"units/a.service": "a",
		"units/b.service": "b",
		"recipes/common.yaml": "base: {tar: rootfs.tar}\n" +
			"files: [{path: /etc/a, content: parent}]\n" +
			"units: [{name: a.service}]\n" +
			"overlays: []\n" +
			"disk: {size: 1GiB, fstab: {options: [discard]}}\n",
		"recipes/middle.yaml": "extends: common\nfiles: [{path: /etc/b, content: middle}]\n",
		"recipes/master.yaml": "extends: middle\n" +
			"base: {dir: tree}\n" +
			"units: [{name: b.service, enable: true}]\n" +
			"disk: {size: 2GiB}\n",
	})
	lab, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := lab.Recipe("master")
	if err != nil {
		t.Fatal(err)
	}
	var srcs []string
	for _, s := range r.Sources {
		srcs = append(srcs, s.File)
	}
	if want := []string{"recipes/master.yaml", "recipes/middle.yaml", "recipes/common.yaml"}; !slices.Equal(srcs, want) {
		t.Errorf("Sources = %v, want %v", srcs, want)
	}
	// base is replaced whole, not merged into two bases.
	if r.Base.Tar != "" || r.Base.Dir != dir+"/tree" || r.Base.Pos.File != "recipes/master.yaml" {
		t.Errorf("Base = %+v", r.Base)
	}
	// lists append, parent's items first; positions stay in their files.
	if len(r.Files) != 2 || r.Files[0].Path != "/etc/a" || r.Files[1].Path != "/etc/b" ||
		r.Files[0].Pos.File != "recipes/common.yaml" || r.Files[1].Pos.File != "recipes/middle.yaml" {
		t.Errorf("Files = %+v", r.Files)
	}
	if len(r.Units) != 2 || r.Units[0].Name != "a.service" || r.Units[0].Enable || !r.Units[1].Enable {
		t.Errorf("Units = %+v", r.Units)
	}
	// maps merge, scalars override.
	if r.Disk.Size != 2*GiB || !slices.Equal(r.Disk.FstabOptions, []string{"discard"}) {
		t.Errorf("Disk = %+v", r.Disk)
	}
	want := "base: {dir: tree}\n" +
		"files: [{path: /etc/a, content: parent}, {path: /etc/b, content: middle}]\n" +
		"units: [{name: a.service}, {name: b.service, enable: true}]\n" +
		"overlays: []\n" +
		"disk: {size: 2GiB, fstab: {options: [discard]}}\n"
	if string(r.Rendered) != want {
		t.Errorf("Rendered =\n%s\nwant\n%s", r.Rendered, want)
	}
}
