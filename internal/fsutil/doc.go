// Package fsutil holds the small file primitives every stage of labbake
// shares: writing a file atomically (temp name, fsync, rename, fsync of
// the directory) so that a failed or killed run leaves the previous file
// as it was, and never writes through a symlink it did not make.
package fsutil
