package recipe

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/builders/tree"
)

// Checks is what `labbake test` verifies inside a booted image.
type Checks struct {
	UnitsActive []string       // systemd units that must be active
	Files       []string       // absolute paths that must exist
	Commands    []CheckCommand // commands that must exit 0 (and print Expect)
	Pos         Pos
}

// CheckCommand is a shell command run inside the guest.
type CheckCommand struct {
	Run    string // run by /bin/sh -c
	Expect string // a substring its output must hold; "" = only exit 0
	Pos    Pos
}

// Empty reports whether there is nothing to check.
func (c Checks) Empty() bool {
	return len(c.UnitsActive) == 0 && len(c.Files) == 0 && len(c.Commands) == 0
}

func (d *decoder) decodeChecks(n *yaml.Node) Checks {
	c := Checks{}
	if n == nil || isNull(n) {
		return c
	}
	c.Pos = d.pos(n)
	f, ok := d.mapping(n, "checks", "units_active", "files", "commands")
	if !ok {
		return c
	}
	if un := f.get("units_active"); un != nil {
		items, _ := d.sequence(un, "checks.units_active")
		for i, item := range items {
			field := indexPath("checks.units_active", i)
			s, ok := d.str(item, field)
			if !ok {
				continue
			}
			if err := tree.CheckUnitName(s); err != nil {
				d.errorf(item, field, "%v", err)
				continue
			}
			c.UnitsActive = append(c.UnitsActive, s)
		}
	}
	if fn := f.get("files"); fn != nil {
		items, _ := d.sequence(fn, "checks.files")
		for i, item := range items {
			field := indexPath("checks.files", i)
			s, ok := d.str(item, field)
			if !ok {
				continue
			}
			if msg := checkImagePath(s); msg != "" {
				d.errorf(item, field, "%s", msg)
				continue
			}
			c.Files = append(c.Files, s)
		}
	}
	if cn := f.get("commands"); cn != nil {
		items, _ := d.sequence(cn, "checks.commands")
		for i, item := range items {
			field := indexPath("checks.commands", i)
			m, ok := d.mapping(item, field, "run", "expect")
			if !ok {
				continue
			}
			cmd := CheckCommand{Pos: d.pos(item)}
			rn := m.get("run")
			if rn == nil {
				d.errorf(item, field+".run", "run is required: the command to run in the guest")
				continue
			}
			s, ok := d.str(rn, field+".run")
			if !ok {
				continue
			}
			if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "\n\x00") {
				d.errorf(rn, field+".run", "run must be one non-empty line")
				continue
			}
			cmd.Run = s
			if en := m.get("expect"); en != nil {
				e, ok := d.str(en, field+".expect")
				if !ok {
					continue
				}
				cmd.Expect = e
			}
			c.Commands = append(c.Commands, cmd)
		}
	}
	return c
}
