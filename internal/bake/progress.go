package bake

import (
	"io"
	"os"
	"syscall"
	"time"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/source"
)

// pollEvery is how often a watched job's size is read.
const pollEvery = 200 * time.Millisecond

// watch shows the bytes of a job growing as a bar redrawn on a terminal:
// current is polled every pollEvery; total is -1 when unknown. The
// returned func ends the display (cleared either way: the log line after
// it tells the result). A nil w shows nothing.
func watch(w io.Writer, name string, total int64, current func() int64) func() {
	if w == nil {
		return func() {}
	}
	p := source.NewProgress(w, true, name, "writing", "wrote", total)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if n := current(); n > last {
				p.Add(n - last)
				last = n
			}
		}
	}()
	return func() {
		close(stop)
		<-stopped
		p.Abort()
	}
}

// allocated returns the bytes a file occupies on disk (a sparse raw disk
// grows by what was written to it), 0 when it cannot be read.
func allocated(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// rootUse is what a root file system made from a tree takes, in bytes.
type rootUse struct {
	// Sure is what it takes at the least: the blocks of the directories
	// and of the blobs the build wrote (sparse where the content has whole
	// zero blocks, as mke2fs -d writes them), and what mke2fs writes
	// besides (inode tables and journal).
	Sure int64
	// Host is what the host's files (a dir base, overlays) occupy on the
	// host: mke2fs writes fewer blocks where they hold whole zero blocks,
	// so it is only an estimate.
	Host int64
}

// rootEstimate estimates what a root file system of size bytes made from
// the tree takes. One estimate serves both the size check before a build
// (Sure) and the progress bar during it (Sure+Host).
func rootEstimate(t *tree.Tree, size int64) rootUse {
	u := rootUse{Sure: ext4Overhead(size)}
	for _, e := range t.Entries() {
		switch {
		case e.Type == tree.Regular && e.Content != nil && e.Content.Owned:
			u.Sure += blocks(allocated(e.Content.Path))
		case e.Type == tree.Regular && e.Content != nil:
			u.Host += blocks(min(allocated(e.Content.Path), e.Content.Size))
		case e.Type == tree.Dir:
			u.Sure += 4096
		}
	}
	return u
}

// blocks rounds n up to whole 4 KiB blocks.
func blocks(n int64) int64 { return (n + 4095) &^ 4095 }

// ext4Overhead estimates what mke2fs writes besides file contents into a
// root of size bytes: the inode tables (one 256-byte inode per 16 KiB,
// written in full) and the journal (e2fsprogs' default size).
func ext4Overhead(size int64) int64 {
	blocks := size / 4096
	journal := int64(1024)
	switch {
	case blocks >= 8<<20:
		journal = 65536
	case blocks >= 4<<20:
		journal = 32768
	case blocks >= 512<<10:
		journal = 16384
	case blocks >= 256<<10:
		journal = 8192
	case blocks >= 32<<10:
		journal = 4096
	}
	return size/16384*256 + journal*4096
}
