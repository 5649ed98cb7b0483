// Package cache is the content-addressed store that sits between the fetch
// stage and the builders: the fetch stage stores every input here by digest
// (downloaded artifacts, Debian base tarballs, OCI layers); builds read
// inputs only through it, so what a build sees is exactly what the plan
// pinned; bundles carry it to offline machines.
//
// Layout under the cache directory (--cache, default $XDG_CACHE_HOME/labbake):
//
//	blobs/sha256/<hex>   immutable blobs, read-only, named by their sha256
//	refs/<hex>           named refs: JSON {"key":…, "digest":…}, the file
//	                     named by the sha256 of the key
//	ingest/              temp files of writes in progress, each held under
//	                     flock; leftovers of killed writers are removed by
//	                     the next Open
//	locks/<hex>          cross-process lock files (see Cache.Lock)
//	tmp/                 scratch space of the builds; never touched here
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
// so a damaged bundle leaves the cache exactly as it was.
package cache
