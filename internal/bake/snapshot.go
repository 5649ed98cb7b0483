package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/iox"
)

// The tree snapshots keep what a recipe's base and layers make of the
// tree (the tarballs a role starts from, extracted) in CACHE/trees/KEY,
// so that the next build of a role on the same tarballs reads the
// snapshot's index instead of extracting and hashing hundreds of MB. KEY
// is a digest of labbake's own program, the epoch and each tarball: a
// pinned input by its digest, a tar file of the lab by its identity on
// the host (device, inode, size, modification and change times; any
// write to it changes them).
//
// A snapshot is kept on the second build that asks for the same key (the
// first one leaves a KEY.seen mark): a one-off build, as in CI, does not
// pay to write one. At most keepSnapshots are kept, the most recently
// used, and only where the disk keeps its free-space margin after.

// keepSnapshots is how many tree snapshots the cache keeps.
const keepSnapshots = 4

// snapshotMeta is what a snapshot records beside the tree: the digests of
// the lab's tar files it was made from, which the plan needs.
type snapshotMeta struct {
	Files map[string]snapshotFile `json:"files"`
}

type snapshotFile struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// snapshotKey returns the key of the tree that the recipe's base and
// layers make, and false when they are not all tarballs (a dir base is
// read in place: nothing to keep).
func (a *assembler) snapshotKey(epoch time.Time) (string, bool, error) {
	if a.snapshots == "" {
		return "", false, nil
	}
	self, err := iox.SelfDigest()
	if err != nil {
		return "", false, err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "labbake tree snapshot 1\x00%s\x00%d\n", self, epoch.Unix())
	// An input that cannot be named here is no snapshot's: its stage
	// reports the problem, at its place in the recipe.
	add := func(field, tarPath string) (bool, error) {
		if tarPath != "" {
			id, err := fileIdentity(tarPath)
			if err != nil {
				return false, nil
			}
			fmt.Fprintf(&sb, "%s file %q %s\n", field, rel(a.lab, tarPath), id)
			return true, nil
		}
		in, err := a.pinned(field)
		if err != nil {
			return false, nil
		}
		fmt.Fprintf(&sb, "%s %s %s %s\n", field, in.Kind, in.Digest, strings.Join(in.Layers, ","))
		return true, nil
	}
	if a.r.Base.Dir != "" {
		return "", false, nil
	}
	if ok, err := add("base", a.r.Base.Tar); !ok || err != nil {
		return "", false, err
	}
	for i, l := range a.r.Layers {
		if ok, err := add(fmt.Sprintf("layers[%d]", i), l.Tar); !ok || err != nil {
			return "", false, err
		}
	}
	sum := sha256.Sum256([]byte(sb.String()))
	return hex.EncodeToString(sum[:16]), true, nil
}

// fileIdentity names the file at p as the host knows it; its change time
// moves on every write and cannot be set back.
func fileIdentity(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("%s: no identity on this system", p)
	}
	return fmt.Sprintf("%d:%d %d %d.%d %d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// loadSnapshot returns the tree kept under key, or nil when there is none
// (or it is damaged: then it is removed).
func (a *assembler) loadSnapshot(key string, epoch time.Time) *tree.Tree {
	dir := filepath.Join(a.snapshots, key)
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var meta snapshotMeta
	if err == nil {
		err = json.Unmarshal(b, &meta)
	}
	var t *tree.Tree
	if err == nil {
		t, err = tree.ReadSnapshot(dir, epoch)
	}
	if err != nil {
		a.log.Warn("tree snapshot dropped", "key", key, "error", err)
		_ = os.RemoveAll(dir)
		return nil
	}
	for p, f := range meta.Files {
		a.files.remember(p, f.Digest, f.Size)
	}
	a.snapKey, a.clean, a.snapDigests = key, readClean(filepath.Join(dir, "clean")), digestsOf(t.All())
	now := time.Now()
	_ = os.Chtimes(dir, now, now) // used: the last to go
	t.SetLogger(a.log)
	return t
}

// storeSnapshot keeps t (the tree of the base and layers) under key if
// this is the second build to ask for it and the disk has room.
func (a *assembler) storeSnapshot(ctx context.Context, key string, t *tree.Tree, files []string) {
	seen := filepath.Join(a.snapshots, key+".seen")
	if _, err := os.Stat(seen); err != nil {
		if err := os.MkdirAll(a.snapshots, 0o755); err == nil {
			_ = os.WriteFile(seen, nil, 0o644)
		}
		pruneSeen(a.snapshots)
		return
	}
	step := time.Now()
	entries := t.Entries()
	var bytes int64
	for _, e := range entries {
		if e.Content != nil {
			bytes += e.Content.Size
		}
	}
	if ok, free := iox.KeepsFree(a.snapshots, bytes); !ok {
		a.log.Info("tree snapshot: not kept", "reason", fmt.Sprintf("too little free space (%d MiB free)", free>>20))
		return
	}
	meta := snapshotMeta{Files: map[string]snapshotFile{}}
	for _, p := range files {
		if d, size, ok := a.files.known(p); ok {
			meta.Files[p] = snapshotFile{d, size}
		}
	}
	if err := writeSnapshot(ctx, a.snapshots, key, entries, meta); err != nil {
		a.log.Warn("tree snapshot: not kept", "error", err)
		return
	}
	_ = os.Remove(seen)
	a.snapKey, a.snapDigests = key, digestsOf(slices.Values(entries))
	iox.PruneDirs(a.snapshots, keepSnapshots)
	a.log.Debug("tree snapshot kept", "key", key, "bytes", bytes, "took", since(step))
}

func writeSnapshot(ctx context.Context, pool, key string, entries []tree.Entry, meta snapshotMeta) error {
	tmp, err := os.MkdirTemp(pool, ".tmp-"+key+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // nothing left once renamed
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o644); err != nil {
		return err
	}
	if err := tree.WriteSnapshot(ctx, tmp, entries); err != nil {
		return err
	}
	dst := filepath.Join(pool, key)
	if err := os.Rename(tmp, dst); err != nil {
		if _, serr := os.Stat(filepath.Join(dst, "index")); serr == nil {
			return nil // a concurrent build of another role kept the same
		}
		return err
	}
	return atomicfile.SyncDir(pool)
}

// pruneSeen keeps the marks of the 16 most recent first sightings.
func pruneSeen(pool string) {
	marks, _ := filepath.Glob(filepath.Join(pool, "*.seen"))
	if len(marks) <= 16 {
		return
	}
	type mark struct {
		path string
		at   time.Time
	}
	var ms []mark
	for _, p := range marks {
		if fi, err := os.Stat(p); err == nil {
			ms = append(ms, mark{p, fi.ModTime()})
		}
	}
	slices.SortFunc(ms, func(a, b mark) int { return b.at.Compare(a.at) })
	for _, m := range ms[min(16, len(ms)):] {
		_ = os.Remove(m.path)
	}
}

// digestsOf is the set of the contents' digests of entries.
func digestsOf(entries iter.Seq[tree.Entry]) map[string]bool {
	m := map[string]bool{}
	for e := range entries {
		if e.Type == tree.Regular && e.Content != nil && e.Content.Digest != "" {
			m[e.Content.Digest] = true
		}
	}
	return m
}

// readClean reads the digests of a snapshot's contents that a secret scan
// found clean, one per line; a missing or unreadable list is empty.
func readClean(p string) map[string]bool {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	clean := map[string]bool{}
	for _, d := range strings.Fields(string(b)) {
		if iox.IsSHA256Hex(d) {
			clean[d] = true
		}
	}
	return clean
}

// keepClean adds to the snapshot this build read or kept the digests of
// its contents that the secret scan just read and found clean: the next
// build on it reads only what is new. What a file holds is all the scan
// looks at, so its verdict holds whatever the path or the recipe.
func (a *assembler) keepClean(scanned []string) {
	if a.snapKey == "" || len(scanned) == 0 {
		return
	}
	all := make([]string, 0, len(a.clean)+len(scanned))
	for d := range a.clean {
		all = append(all, d)
	}
	for _, d := range scanned {
		if a.snapDigests[d] && !a.clean[d] {
			all = append(all, d)
		}
	}
	if len(all) == len(a.clean) {
		return
	}
	slices.Sort(all)
	if err := atomicfile.WriteFile(filepath.Join(a.snapshots, a.snapKey, "clean"), []byte(strings.Join(all, "\n")+"\n"), 0o644); err != nil {
		a.log.Warn("tree snapshot: secret scan verdicts not kept", "error", err)
	}
}
