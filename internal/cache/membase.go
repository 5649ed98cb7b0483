package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/internal/iox"
)

// Work dirs hold a build's scratch: the files of the tree (the base's
// extracted files, the artifacts), the staged tree mke2fs reads, the boot
// loaders' work. Written once and read back within seconds, they need no
// storage: where the machine has memory to spare they go to a directory
// of labbake's on the tmpfs /dev/shm instead of CACHE/tmp, which spares
// the disk writing them out and then discarding them (a build of the
// shipped lab's master writes about 2 GB of such files). The same locks
// and markers apply there; a dir left by a killed build is swept by the
// next build using the same cache, and tmpfs empties at reboot anyway.
var (
	memoryRoot = "/dev/shm"
	// memoryNeeded is what MemAvailable and the tmpfs's free space must
	// be at least for work dirs to go there: room for two roles' trees
	// at once (about 1.4 GB each for the shipped lab) and their raw
	// disks, with the rest of the machine left alone.
	memoryNeeded int64 = 8 << 30
)

// workBases lists the directories work dirs of cacheDir may live in: the
// one new work dirs go to first, then the other (swept too: work dirs of
// builds that ran when memory was short, or before labbake used memory).
func workBases(cacheDir string) (string, []string) {
	disk := filepath.Join(cacheDir, "tmp")
	if OnDiskOnly() {
		return disk, []string{disk}
	}
	mem, ok := memoryBase(cacheDir)
	if !ok {
		if mem != "" {
			return disk, []string{disk, mem}
		}
		return disk, []string{disk}
	}
	return mem, []string{mem, disk}
}

// OnDiskOnly says whether $LABBAKE_SCRATCH is "disk": a build's scratch
// (work dirs, the raw disk) then stays on storage whatever memory the
// machine has.
func OnDiskOnly() bool { return os.Getenv("LABBAKE_SCRATCH") == "disk" }

// memoryBase is /dev/shm/labbake-UID/HASH (HASH names cacheDir) and
// whether new work dirs may go there now: /dev/shm is a tmpfs that allows
// executing files (the boot loaders' tools run from the work dir), it and
// the machine have memoryNeeded to spare, and labbake-UID is a directory
// of this user's that no one else can write (/dev/shm is shared by every
// user). "" when there is no such place at all.
func memoryBase(cacheDir string) (string, bool) {
	abs, err := filepath.Abs(cacheDir)
	if err != nil {
		return "", false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(memoryRoot, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return "", false
	}
	mine := filepath.Join(memoryRoot, "labbake-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(mine, 0o700); err != nil && !os.IsExist(err) {
		return "", false
	}
	var own unix.Stat_t
	if err := unix.Lstat(mine, &own); err != nil || own.Mode&unix.S_IFMT != unix.S_IFDIR ||
		int(own.Uid) != os.Getuid() || own.Mode&0o077 != 0 {
		return "", false // not ours, or open to others: leave it be
	}
	sum := sha256.Sum256([]byte(abs))
	base := filepath.Join(mine, hex.EncodeToString(sum[:8]))
	free := int64(st.Bavail) * st.Bsize
	ok := st.Flags&unix.ST_NOEXEC == 0 && free >= memoryNeeded && iox.MemAvailable() >= memoryNeeded
	return base, ok
}
