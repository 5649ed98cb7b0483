// Package cache is the content-addressed store that sits between the fetch
// stage and the builders: the fetch stage stores every input here by digest
// (downloaded artifacts, Debian base tarballs, OCI layers); builds read
// inputs only through it, so what a build sees is exactly what the plan
// pinned; bundles carry it to offline machines.
//
// Layout under the cache directory (--cache, default $XDG_CACHE_HOME/labbake):
//
//	CACHEDIR.TAG         marks the directory as labbake's (see below)
//	blobs/sha256/<hex>   immutable blobs, read-only, named by their sha256
//	refs/<hex>           named refs: JSON {"key":…, "digest":…}, the file
//	                     named by the sha256 of the key
//	ingest/              temp files of writes in progress, each held under
//	                     flock; leftovers of killed writers are removed by
//	                     the next Open
//	locks/<hex>          cross-process lock files (see Cache.Lock)
//	go/build/            GOCACHE of the go inputs' builds (internal/source/gobuild),
//	                     kept so that a rebuild only links; the go command
//	                     manages it (go clean -cache empties it)
//	go/toolchain/        Go toolchains fetched as golang.org/toolchain modules
//	                     (their zips are blobs), unpacked once each:
//	                     go1.26.8.linux-amd64/ (internal/source/gobuild)
//	tmp/build-ROLE-N     a build's work dir (WorkDir), with its lock file
//	                     tmp/build-ROLE-N.lock; leftovers of killed builds
//	                     are removed by the next WorkDir
//
// labbake removes only what it can prove it wrote. A cache directory that
// is missing or empty when labbake first opens it gets a CACHEDIR.TAG with
// labbake's content, and only in such a directory does Open sweep ingest/
// (files with labbake's names) and do Prune and Remove delete blobs. A
// directory with other content and no such tag — --cache ~ or /tmp — is
// used as it is: labbake adds its files, and removes none but its own work
// dirs, which carry their own markers (one in the lock file, one in the
// dir, both written at creation), checked before a dead build's work dir is
// removed.
//
// A blob becomes visible only by an atomic rename after its content has been
// hashed, checked against the expected digest and fsynced, so an interrupted
// write never leaves an entry behind. Readers verify: Cache.Open returns a
// reader that checks the digest at EOF, Cache.Path verifies a whole blob once
// per process before handing out its file path.
//
// A bundle (Cache.ExportBundle, Cache.ImportBundle) is one tar file, plain or
// zstd-compressed, holding an index, a lab's lock file and the blobs it
// names. Import checks every blob against the index before anything is added,
// so a damaged bundle leaves the cache exactly as it was; given the bundle's
// size, it refuses an index declaring more than the bundle can hold (a zstd
// stream expands at most 32768-fold) before reading any blob, and every
// error that is the bundle's fault wraps ErrBadBundle.
package cache
