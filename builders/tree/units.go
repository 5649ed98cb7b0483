package tree

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// unitDir is where AddUnits installs unit files and their enablement links.
const unitDir = "etc/systemd/system"

// Unit is a systemd unit file to install, and whether to enable it.
type Unit struct {
	Name    string // e.g. "etcd.service", "getty@.service"
	Content []byte
	Enable  bool
}

// AddUnits installs each unit as /etc/systemd/system/NAME (0644, 0:0,
// epoch, an owned blob in blobDir) and enables those with Enable the way
// systemctl enable would, without running it: from the [Install] section,
// WantedBy= makes /etc/systemd/system/TARGET.wants/NAME ->
// /etc/systemd/system/NAME, RequiredBy= the same in TARGET.requires/,
// UpheldBy= in TARGET.upholds/, and Alias= makes
// /etc/systemd/system/ALIAS -> NAME; Also= is ignored with a debug note.
// A template unit (foo@.service) is enabled as foo@INSTANCE.service with
// INSTANCE from DefaultInstance=. Enabling a unit without an [Install]
// section, or whose [Install] section installs nothing, is an error.
func (t *Tree) AddUnits(units []Unit, blobDir string) error {
	if len(units) == 0 {
		return nil
	}
	dir, err := prepareBlobDir(blobDir)
	if err != nil {
		return fmt.Errorf("units: %w", err)
	}
	for _, u := range units {
		if err := t.addUnit(u, dir); err != nil {
			return fmt.Errorf("unit %q: %w", u.Name, err)
		}
	}
	return nil
}

func (t *Tree) addUnit(u Unit, blobDir string) error {
	if err := CheckUnitName(u.Name); err != nil {
		return err
	}
	// Parse before writing anything, so a bad unit leaves no trace.
	var inst install
	if u.Enable {
		var err error
		if inst, err = parseInstall(u.Content); err != nil {
			return err
		}
		if err := inst.check(u.Name); err != nil {
			return err
		}
	}
	b, err := writeBlobBytes(blobDir, u.Content)
	if err != nil {
		return err
	}
	unitPath := unitDir + "/" + u.Name
	if _, err := t.add(Entry{Path: unitPath, Type: Regular, Mode: 0o644, ModTime: t.epoch, Content: b}, nil); err != nil {
		dropBlob(b)
		return err
	}
	if !u.Enable {
		return nil
	}
	for _, a := range inst.also {
		t.log.Debug("tree: unit Also= ignored; enable that unit explicitly", "unit", u.Name, "also", a)
	}
	linkName := u.Name
	if isTemplate(u.Name) {
		at := strings.IndexByte(u.Name, '@')
		linkName = u.Name[:at+1] + inst.defaultInstance + u.Name[at+1:]
	}
	link := func(p, target string) error {
		_, err := t.add(Entry{Path: p, Type: Symlink, Mode: 0o777, ModTime: t.epoch, Linkname: target}, nil)
		return err
	}
	for _, dep := range []struct {
		suffix string
		units  []string
	}{{".wants", inst.wantedBy}, {".requires", inst.requiredBy}, {".upholds", inst.upheldBy}} {
		for _, target := range dep.units {
			if err := link(unitDir+"/"+target+dep.suffix+"/"+linkName, "/"+unitPath); err != nil {
				return err
			}
		}
	}
	for _, alias := range inst.alias {
		if err := link(unitDir+"/"+alias, u.Name); err != nil {
			return err
		}
	}
	return nil
}

// install is the parsed [Install] section of a unit.
type install struct {
	found                          bool
	wantedBy, requiredBy, upheldBy []string
	alias, also                    []string
	defaultInstance                string
}

func (in install) check(name string) error {
	if !in.found {
		return errors.New("enable: true but the unit has no [Install] section")
	}
	if len(in.wantedBy)+len(in.requiredBy)+len(in.upheldBy)+len(in.alias) == 0 {
		return errors.New("enable: true but the [Install] section has no WantedBy=, RequiredBy=, UpheldBy= or Alias=")
	}
	for _, lists := range [][]string{in.wantedBy, in.requiredBy, in.upheldBy} {
		for _, d := range lists {
			if err := CheckUnitName(d); err != nil {
				return fmt.Errorf("[Install]: %w", err)
			}
		}
	}
	for _, a := range in.alias {
		if err := CheckUnitName(a); err != nil {
			return fmt.Errorf("[Install] Alias=: %w", err)
		}
		if unitSuffix(a) != unitSuffix(name) {
			return fmt.Errorf("[Install] Alias=%s: not the same unit type as %s", a, name)
		}
		if isTemplate(a) != isTemplate(name) {
			return fmt.Errorf("[Install] Alias=%s: a template may only alias a template", a)
		}
	}
	if isTemplate(name) {
		if in.defaultInstance == "" {
			return errors.New("template unit needs DefaultInstance= to be enabled")
		}
		if strings.ContainsAny(in.defaultInstance, "/@") {
			return fmt.Errorf("[Install] DefaultInstance=%s: invalid instance", in.defaultInstance)
		}
	}
	return nil
}

// parseInstall reads the [Install] section of a unit file: comments (#, ;),
// continuation lines (trailing \), several values per line and several
// lines per key; an empty assignment resets a list, as in systemd.
func parseInstall(content []byte) (install, error) {
	var in install
	sc := bufio.NewScanner(bytes.NewReader(content))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	section := ""
	pending := ""
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line = pending + line
		pending = ""
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return in, fmt.Errorf("line %d: bad section header %q", lineNo, line)
			}
			section = line[1 : len(line)-1]
			if section == "Install" {
				in.found = true
			}
			continue
		}
		if section != "Install" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return in, fmt.Errorf("line %d: [Install]: expected KEY=VALUE, got %q", lineNo, line)
		}
		key = strings.TrimSpace(key)
		vals := strings.Fields(val)
		add := func(list *[]string) {
			if len(vals) == 0 {
				*list = nil
				return
			}
			*list = append(*list, vals...)
		}
		switch key {
		case "WantedBy":
			add(&in.wantedBy)
		case "RequiredBy":
			add(&in.requiredBy)
		case "UpheldBy":
			add(&in.upheldBy)
		case "Alias":
			add(&in.alias)
		case "Also":
			add(&in.also)
		case "DefaultInstance":
			in.defaultInstance = strings.TrimSpace(val)
		default:
			if !strings.HasPrefix(key, "X-") {
				return in, fmt.Errorf("line %d: [Install]: unknown key %q", lineNo, key)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return in, fmt.Errorf("reading unit: %w", err)
	}
	return in, nil
}

// maxUnitName is the longest unit name systemd accepts, in bytes.
const maxUnitName = 255

// CheckUnitName reports what is wrong with the name of a systemd unit
// ("etcd.service", the template "getty@.service", the instance
// "getty@ttyS0.service"), or nil: systemd's characters (ASCII letters and
// digits, ':', '-', '_', '.', '\\' and one '@' after a non-empty prefix),
// at most 255 bytes, and a unit type suffix systemd knows. It is the one
// rule for unit names: the recipe checks its units and checks with it, so a
// name AddUnits would refuse is refused at its place in the recipe.
func CheckUnitName(name string) error {
	if name == "" {
		return errors.New("empty unit name")
	}
	if len(name) > maxUnitName {
		return fmt.Errorf("unit name %.40q... is longer than %d bytes", name, maxUnitName)
	}
	for _, r := range name {
		if !unitNameChar(r) {
			return fmt.Errorf("invalid unit name %q: %q is not one of A-Z a-z 0-9 : - _ . \\ @", name, r)
		}
	}
	suf := unitSuffix(name)
	if suf == "" {
		return fmt.Errorf("unit name %q has no unit type suffix (%s)", name, strings.Join(unitSuffixes, ", "))
	}
	if len(name) == len(suf) || strings.HasPrefix(name, "@") || strings.Count(name, "@") > 1 {
		return fmt.Errorf("invalid unit name %q", name)
	}
	return nil
}

func unitNameChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(":-_.\\@", r)
}

// unitSuffixes are the unit type suffixes systemd knows.
var unitSuffixes = []string{".service", ".socket", ".target", ".timer", ".path", ".mount",
	".automount", ".swap", ".slice", ".scope", ".device"}

// unitSuffix returns the unit type suffix of name (".service", …), or ""
// when it has none systemd knows.
func unitSuffix(name string) string {
	if ext := path.Ext(name); slices.Contains(unitSuffixes, ext) {
		return ext
	}
	return ""
}

// isTemplate reports whether name is a template unit (foo@.service).
func isTemplate(name string) bool {
	suf := unitSuffix(name)
	return suf != "" && strings.HasSuffix(strings.TrimSuffix(name, suf), "@")
}
