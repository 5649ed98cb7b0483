package recipe

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/builders/seed"
)

// SeedFile is one entry of lab.yaml's seed_files: a file of the lab dir
// that the seeds of some machines write into them (cloud-init write_files,
// owner root:root), never into an image. This is how a lab's secrets (a
// ceph key, a registry credential) reach its machines: images are shared
// and hold none. The file is read when seeds are written (ReadSeedFiles).
type SeedFile struct {
	Path string // in the machine: absolute and clean
	File string // on the host, as written: relative to the lab dir
	// Roles and Nodes select the machines that get the file: those of
	// these roles and these machines; neither selects every machine.
	Roles, Nodes []string
	Mode         uint32 // permission bits, default 0o600
	Index        int    // its place in seed_files
	Pos          Pos    // the entry
	PathPos      Pos    // its path:
	FilePos      Pos    // its file:, where problems reading the file are reported
}

// Bounds of what seed_files bring into a seed: the seed is a small ISO
// cloud-init parses whole, base64 makes every byte 4/3.
const (
	MaxSeedFile     = 1 << 20 // one file
	MaxSeedFileSums = 4 << 20 // the seed files of one machine together
)

// seedFileKeys are the keys of a seed_files entry.
var seedFileKeys = []string{"path", "file", "roles", "nodes", "mode"}

// For reports whether machine n gets f.
func (f SeedFile) For(n Node) bool {
	if len(f.Roles) == 0 && len(f.Nodes) == 0 {
		return true
	}
	return slices.Contains(f.Roles, n.Role) || slices.Contains(f.Nodes, n.Name)
}

// Field names key of f's entry for messages: "seed_files[2].file".
func (f SeedFile) Field(key string) string {
	return joinPath(indexPath("seed_files", f.Index), key)
}

// SeedFilesFor returns the seed files machine name gets, in lab.yaml's
// order.
func (l *Lab) SeedFilesFor(name string) []SeedFile {
	n, ok := l.Node(name)
	if !ok {
		return nil
	}
	var out []SeedFile
	for _, f := range l.SeedFiles {
		if f.For(n) {
			out = append(out, f)
		}
	}
	return out
}

// SeedFileSource resolves f.File to its host path with the rules of every
// path of the lab (see inLab): inside the lab dir once symbolic links are
// followed.
func (l *Lab) SeedFileSource(f SeedFile) (string, error) {
	return l.inLab(filepath.FromSlash(f.File))
}

// SeedContent is a seed file read.
type SeedContent struct {
	SeedFile
	Content []byte
}

// ReadSeedFiles reads the seed files the machines names get (every
// machine when names is empty) and returns, for each, its files in
// lab.yaml's order. A file is read once however many machines get it.
// Every problem (a file missing, unreadable, not a regular file, leading
// out of the lab dir, too large; a machine's files too large together) is
// an ErrorList entry at the entry's file:.
func (l *Lab) ReadSeedFiles(names []string) (map[string][]SeedContent, error) {
	if len(names) == 0 {
		for _, n := range l.Nodes {
			names = append(names, n.Name)
		}
	}
	var e errs
	read := map[int][]byte{}
	failed := map[int]bool{}
	out := map[string][]SeedContent{}
	for _, name := range names {
		n, ok := l.Node(name)
		if !ok {
			return nil, fmt.Errorf("no node %q in lab.yaml", name)
		}
		var sum int64
		reported := false
		for i, f := range l.SeedFiles {
			if !f.For(n) || failed[i] {
				continue
			}
			field := f.Field("file")
			b, done := read[i]
			if !done {
				var err error
				b, err = l.readSeedFile(f)
				if err != nil {
					e.add(f.FilePos, field, "%v", err)
					failed[i] = true
					continue
				}
				read[i] = b
			}
			sum += int64(len(b))
			if sum > MaxSeedFileSums && !reported {
				e.add(f.FilePos, field, "the seed files of %s come to more than %s with %s: a seed carries at most %s of them",
					name, FormatSize(MaxSeedFileSums), f.File, FormatSize(MaxSeedFileSums))
				reported = true
			}
			out[name] = append(out[name], SeedContent{SeedFile: f, Content: b})
		}
	}
	if err := e.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// readSeedFile reads f's file: a regular file inside the lab dir of at
// most MaxSeedFile bytes. It is opened without blocking and checked as
// opened, so a FIFO cannot stall the seed.
func (l *Lab) readSeedFile(f SeedFile) ([]byte, error) {
	p, err := l.SeedFileSource(f)
	if err != nil {
		switch {
		case errors.Is(err, errOutside):
			return nil, fmt.Errorf("%v (%s)", err, pathRule)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%s not found (it is read when seeds are written)", f.File)
		}
		return nil, err
	}
	h, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("reading %s: %w", f.File, err)
	}
	defer h.Close()
	st, err := h.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.File, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is a %s, not a regular file", f.File, typeName(st.Mode()))
	}
	if st.Size() > MaxSeedFile {
		return nil, fmt.Errorf("%s is larger than %s, the most a seed file may hold", f.File, FormatSize(MaxSeedFile))
	}
	b, err := io.ReadAll(io.LimitReader(h, MaxSeedFile+1))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("reading %s: %w", f.File, err)
	}
	if len(b) > MaxSeedFile {
		return nil, fmt.Errorf("%s is larger than %s, the most a seed file may hold", f.File, FormatSize(MaxSeedFile))
	}
	return b, nil
}

// decodeSeedFiles decodes seed_files once the nodes are known: each
// entry's path, file, roles, nodes and mode, and that no machine gets two
// files at one path. Whether the file exists is checked when seeds are
// written, so that verbs that write none do not need it; a path that
// leads out of the lab dir is refused here already.
func (d *decoder) decodeSeedFiles(n *yaml.Node, lab *Lab) {
	items, ok := d.sequence(n, "seed_files")
	if !ok {
		return
	}
	if len(items) > maxEntries {
		d.errorf(n, "seed_files", "%d entries, more than %d", len(items), maxEntries)
		return
	}
	roles := lab.Roles()
	var names []string
	for _, node := range lab.Nodes {
		names = append(names, node.Name)
	}
	type at struct {
		index int
		node  *yaml.Node
	}
	// byMachine: for each machine, the entry that puts a file at a path.
	byMachine := map[string]map[string]at{}
	for i, item := range items {
		path := indexPath("seed_files", i)
		if isNull(item) {
			d.errorf(item, path, "expected a mapping, got null")
			continue
		}
		f, ok := d.mapping(item, path, seedFileKeys...)
		if !ok {
			continue
		}
		sf := SeedFile{Mode: 0o600, Index: i, Pos: d.pos(item), PathPos: d.pos(f.at("path")), FilePos: d.pos(f.at("file"))}
		if v := f.get("path"); v != nil {
			sf.PathPos = d.pos(v)
		}
		if v := f.get("file"); v != nil {
			sf.FilePos = d.pos(v)
		}
		good := true
		pathNode := f.get("path")
		if pathNode == nil {
			d.errorf(f.at("path"), path+".path", "path is required: where the file goes in the machine")
			good = false
		} else if s, ok := d.str(pathNode, path+".path"); !ok {
			good = false
		} else if msg := checkImagePath(s); msg != "" {
			d.errorf(pathNode, path+".path", "%s", msg)
			good = false
		} else if msg := seed.FilePathProblem(s); msg != "" {
			d.errorf(pathNode, path+".path", "%s: %s", s, msg)
			good = false
		} else {
			sf.Path = s
		}
		if fn := f.get("file"); fn == nil {
			d.errorf(f.at("file"), path+".file", "file is required: the file of the lab dir the machines get")
			good = false
		} else if s, ok := d.seedSource(lab, fn, path+".file"); !ok {
			good = false
		} else {
			sf.File = s
		}
		var sok, nok bool
		sf.Roles, sok = d.seedSelect(f, path, "roles", roles)
		sf.Nodes, nok = d.seedSelect(f, path, "nodes", names)
		good = good && sok && nok
		if mn := f.get("mode"); mn != nil {
			if mn.Kind != yaml.ScalarNode || mn.ShortTag() != "!!str" || !modeRe.MatchString(mn.Value) {
				d.errorf(mn, path+".mode", "mode must be a quoted octal string like \"0600\", got %s", describe(mn))
				good = false
			} else if m, _ := strconv.ParseUint(mn.Value, 8, 32); m == 0 {
				d.errorf(mn, path+".mode", "mode %s gives no permission: give at least the owner's, like \"0400\"", mn.Value)
				good = false
			} else {
				sf.Mode = uint32(m)
			}
		}
		if !good {
			continue
		}
		for _, node := range lab.Nodes {
			if !sf.For(node) {
				continue
			}
			m := byMachine[node.Name]
			if m == nil {
				m = map[string]at{}
				byMachine[node.Name] = m
			}
			if first, dup := m[sf.Path]; dup {
				d.errorf(pathNode, path+".path", "%s is also the path of seed_files[%d] (line %d) on machine %s",
					sf.Path, first.index, d.pos(first.node).Line, node.Name)
				good = false
				break
			}
			m[sf.Path] = at{i, pathNode}
		}
		if good {
			lab.SeedFiles = append(lab.SeedFiles, sf)
		}
	}
}

// seedSource decodes the file: of a seed_files entry: a path relative to
// the lab dir that stays inside it. A file that does not exist yet is no
// problem here (see decodeSeedFiles).
func (d *decoder) seedSource(lab *Lab, n *yaml.Node, field string) (string, bool) {
	s, ok := d.str(n, field)
	if !ok {
		return "", false
	}
	if s == "" {
		d.errorf(n, field, "file path is empty")
		return "", false
	}
	_, err := lab.inLab(filepath.FromSlash(s))
	switch {
	case err == nil:
	case errors.Is(err, errOutside):
		d.errorf(n, field, "%v (%s)", err, pathRule)
		return "", false
	case errors.Is(err, fs.ErrNotExist):
	default:
		d.errorf(n, field, "%v", err)
		return "", false
	}
	return s, true
}

// seedSelect decodes the roles: or nodes: of a seed_files entry (key), each
// one of known.
func (d *decoder) seedSelect(f fields, path, key string, known []string) ([]string, bool) {
	field := path + "." + key
	n := f.vals[key]
	if n == nil {
		return nil, true
	}
	items, ok := d.sequence(n, field)
	if !ok {
		return nil, false
	}
	if len(items) == 0 && !isNull(n) {
		d.errorf(n, field, "an empty list selects no machine: leave %s out (with neither roles nor nodes, every machine gets the file)", key)
		return nil, false
	}
	what := strings.TrimSuffix(key, "s")
	if what == "node" {
		what = "machine"
	}
	var out []string
	good := true
	for i, item := range items {
		s, ok := d.str(item, indexPath(field, i))
		if !ok {
			good = false
			continue
		}
		if !slices.Contains(known, s) {
			d.errorf(item, indexPath(field, i), "no %s %q in the lab's nodes (%s: %s)", what, s, key, strings.Join(known, ", "))
			good = false
			continue
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, good
}
