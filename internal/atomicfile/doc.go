// Package atomicfile writes files so that readers see either the old
// content or the whole new one, never a part, even across a crash: the data
// goes to a temp file in the same directory, is fsynced, renamed over the
// destination, and the directory is fsynced. It is the last step of every
// stage that leaves a file for the user outside the cache: labbake.lock
// (resolve), bundles and the lock a bundle carries (cli).
//
// A destination that is a symlink is replaced, never followed; CreateNew
// and WriteNew refuse any existing destination, a dangling symlink included.
package atomicfile
