package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/iox"
)

// The root cache keeps the lower part of a role's root file system (see
// split) between builds, in one slot directory per lab and role: the
// file system as bytes (ROOT.ext4, sparse) and the digest of its bytes
// (ROOT.sum), both named by the key. A slot holds one entry; storing a new
// one removes the others. Entries are checked against their digest on
// every read (the cache never fsyncs them: a torn entry is a miss).

// keepSlots is how many slots the stage cache keeps, the most recently
// used: a slot holds a whole root file system (hundreds of MB to a few
// GB), and labs that are gone leave theirs behind.
const keepSlots = 4

// errNoRoom says a cache entry was not kept for want of space.
var errNoRoom = errors.New("too little free space to keep it")

// chunk is the unit in which cached roots are copied and digested: chunks
// of zeros are skipped, whether the file holds them as a hole or not.
const chunk = 64 << 10

// rootKey is the cache key of a lower root: what mke2fs is given and the
// digest of the entries it is given, and the program that writes them
// (labbake itself, whose staging and fix-ups shape the bytes, and mke2fs).
// The number after "labbake root cache" is the version of the entries'
// form, their digest's included (see copyChunks): 2 since the chunks are
// digested one by one.
func rootKey(ctx context.Context, lower []tree.Entry, blocks int64, opts Options) (string, error) {
	d, err := opts.Hasher.Digest(ctx, lower)
	if err != nil {
		return "", err
	}
	mke2fs, err := findTool("mke2fs")
	if err != nil {
		return "", err
	}
	ver, _ := output(ctx, nil, mke2fs, "-V")
	self, err := iox.SelfDigest()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "labbake root cache 2\x00%s\x00%s\x00%s\x00%d\x00%s\x00%d\x00%s\x00%s",
		self, bytes.TrimSpace(ver), mke2fsConf, blocks, opts.IDs.RootFSUUID, opts.Epoch.Unix(), d, os.Getenv("E2FSPROGS_FAKE_TIME"))
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// loadRoot copies the cached root of key into f at off and reports
// whether it did. A missing entry is a miss; an entry whose bytes do not
// match its digest is removed and is a miss too, after the partition's
// range of f is cleared again.
func loadRoot(ctx context.Context, slot, key string, f *os.File, off, size int64) (bool, error) {
	want, err := os.ReadFile(filepath.Join(slot, key+".sum"))
	if err != nil {
		return false, nil
	}
	src, err := os.Open(filepath.Join(slot, key+".ext4"))
	if err != nil {
		return false, nil
	}
	defer src.Close()
	got, err := copyChunks(ctx, src, 0, f, off, size)
	if err != nil {
		return false, err
	}
	if got == strings.TrimSpace(string(want)) {
		now := time.Now()
		_ = os.Chtimes(slot, now, now) // used: the last to go
		return true, nil
	}
	_ = os.Remove(filepath.Join(slot, key+".sum"))
	_ = os.Remove(filepath.Join(slot, key+".ext4"))
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, size); err != nil {
		return false, fmt.Errorf("clearing the root partition after a damaged cache entry: %w", err)
	}
	return false, errDamaged
}

// errDamaged says a cache entry did not match its digest (it was dropped).
var errDamaged = errors.New("the cached root file system did not match its digest and was dropped")

// storeRoot copies size bytes at off of f into the slot as key's entry and
// removes the slot's other entries.
func storeRoot(ctx context.Context, slot, key string, f *os.File, off, size int64) error {
	if err := os.MkdirAll(slot, 0o755); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if ok, free := iox.KeepsFree(slot, st.Blocks*512); !ok {
		return fmt.Errorf("%w (%d MiB free)", errNoRoom, free>>20)
	}
	tmp, err := os.CreateTemp(slot, ".root-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	if err := tmp.Truncate(size); err != nil {
		return err
	}
	sum, err := copyChunks(ctx, f, off, tmp, 0, size)
	if err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(slot, key+".ext4")); err != nil {
		return err
	}
	sumTmp := filepath.Join(slot, "."+key+".sum")
	if err := os.WriteFile(sumTmp, []byte(sum+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(sumTmp, filepath.Join(slot, key+".sum")); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(slot, "*"))
	for _, p := range old {
		if b := filepath.Base(p); b != key+".ext4" && b != key+".sum" && !strings.HasPrefix(b, ".") {
			_ = os.Remove(p)
		}
	}
	iox.PruneDirs(filepath.Dir(slot), keepSlots)
	return nil
}

// copyChunks copies the chunks of src in [soff, soff+size) that are not
// all zeros to dst at doff plus their place, skipping src's holes without
// reading them, and returns the digest of what it copied. The digest is
// the sha256 of, for each chunk that is not all zeros in order of place,
// its place (8 bytes, big-endian) and the sha256 of its bytes: two ranges
// with equal bytes have equal digests however their zeros are stored, and
// the chunks can be digested in any order, on all cores. A change to this
// form must change the version in rootKey, so that older entries are a
// miss rather than damaged.
//
// The range is cut into jobs of at most copyUnit bytes of src's data,
// taken in turn by one worker per core: each reads its job, digests its
// chunks and writes the runs of them that are not zeros (the workers share
// src and dst: reads and writes name their place, and jobs do not
// overlap). A worker that fails, or finds ctx done, stops the others at
// their next job.
func copyChunks(ctx context.Context, src *os.File, soff int64, dst *os.File, doff, size int64) (string, error) {
	jobs, err := copyJobs(int(src.Fd()), soff, size)
	if err != nil {
		return "", fmt.Errorf("reading the root file system: %w", err)
	}
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	var next atomic.Int64
	var failed atomic.Bool
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, copyUnit)
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(len(jobs)) {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = jobs[i].copy(src, soff, dst, doff, buf)
				}
				if err != nil {
					errs[w] = err
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return "", err
		}
	}
	h := sha256.New()
	var place [8]byte
	for _, j := range jobs {
		for i, s := range j.sums {
			if s.data {
				binary.BigEndian.PutUint64(place[:], uint64(j.start+int64(i)*chunk))
				h.Write(place[:])
				h.Write(s.sum[:])
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyUnit is the most bytes a worker of copyChunks reads and digests at
// a time, a whole number of chunks: enough that each read and write moves
// many chunks, little enough that the work spreads evenly over the cores
// (256 KiB to 4 MiB measured the same on BenchmarkCopyChunks).
const copyUnit = 16 * chunk

// copyJob is a run of chunks [start, end) of the range copyChunks copies
// (places relative to the range; end is a chunk boundary or the range's
// end), with the digests of its chunks, filled in by copy.
type copyJob struct {
	start, end int64
	sums       []chunkSum
}

// chunkSum is the digest of a chunk's bytes, if data: a chunk of zeros
// has none.
type chunkSum struct {
	sum  [sha256.Size]byte
	data bool
}

// copyJobs lists the chunks of the range [soff, soff+size) of the file fd
// that hold data (or share a chunk with data) as jobs in order of place,
// each within one copyUnit-aligned unit of the range. The holes are left
// out: they are chunks of zeros without reading them.
func copyJobs(fd int, soff, size int64) ([]copyJob, error) {
	var jobs []copyJob
	chunks := 0
	for pos := int64(0); pos < size; {
		data, err := unix.Seek(fd, soff+pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return nil, err
		}
		if data-soff >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		start := max(pos, (data-soff)/chunk*chunk)
		end := min(size, (hole-soff+chunk-1)/chunk*chunk)
		for s := start; s < end; {
			e := min(end, (s/copyUnit+1)*copyUnit)
			jobs = append(jobs, copyJob{start: s, end: e})
			chunks += int((e - s + chunk - 1) / chunk)
			s = e
		}
		pos = end
	}
	sums := make([]chunkSum, chunks) // one allocation for them all
	for i := range jobs {
		n := int((jobs[i].end - jobs[i].start + chunk - 1) / chunk)
		jobs[i].sums, sums = sums[:n:n], sums[n:]
	}
	return jobs, nil
}

// zeroChunk is a chunk of zeros, to compare chunks with.
var zeroChunk [chunk]byte

// copy reads the job's chunks from src at soff plus their place into buf,
// digests those that are not all zeros and writes each run of them to dst
// at doff plus its place. What lies past the end of src (a torn entry)
// reads as zeros.
func (j *copyJob) copy(src *os.File, soff int64, dst *os.File, doff int64, buf []byte) error {
	b := buf[:j.end-j.start]
	n, err := src.ReadAt(b, soff+j.start)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the root file system: %w", err)
	}
	clear(b[n:])
	run := -1 // where the chunks not yet written start in b, if any
	write := func(end int) error {
		if run < 0 {
			return nil
		}
		if _, err := dst.WriteAt(b[run:end], doff+j.start+int64(run)); err != nil {
			return fmt.Errorf("copying the root file system: %w", err)
		}
		run = -1
		return nil
	}
	for i, c := 0, 0; c < len(b); i, c = i+1, c+chunk {
		data := b[c:min(c+chunk, len(b))]
		if bytes.Equal(data, zeroChunk[:len(data)]) {
			if err := write(c); err != nil {
				return err
			}
			continue
		}
		j.sums[i] = chunkSum{sha256.Sum256(data), true}
		if run < 0 {
			run = c
		}
	}
	return write(len(b))
}
