// Package source is the fetch stage: it turns URLs, checksum files and
// archive members named by recipes into blobs in the cache;
// internal/source/debian and internal/source/oci handle the other input
// kinds.
//
// A Fetcher downloads over HTTP(S) into a Store (the content-addressed
// cache, internal/cache) and returns the blob's "sha256:<hex>" digest. A
// blob already in the store is never downloaded again, and an offline
// Fetcher never opens a connection at all: what is missing is an error
// wrapping iox.ErrOffline. Mirrors rewrite URL prefixes, so a recipe naming
// https://dl.k8s.io works unchanged in a network that only reaches an
// internal mirror. Checksum reads sha256sum and BSD style checksum files so a
// recipe can pin an artifact by the checksum file its project publishes.
// Extract streams chosen members out of a cached tar (plain, gzip, zstd,
// xz, bzip2), zip archive or Debian package (.deb: its data.tar's members).
//
// Progress goes to Fetcher.Progress: a one-line bar on a terminal, plain
// start, progress and end lines elsewhere. Events (mirror rewrites,
// retries, cache hits) go to Fetcher.Log.
package source
