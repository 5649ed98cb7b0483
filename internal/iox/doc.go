// Package iox holds the I/O primitives that every stage of labbake shares,
// beside internal/atomicfile (which writes files atomically): a flock that
// waits only as long as a context lets it, a reader that stops when its
// context ends, the one way byte counts are shown, sha256 digests parsed
// with go-digest, and the sentinel errors that more than one stage wraps
// (an input not available offline, content that does not match its
// digest).
//
// It sits below everything else: the recipe, plan, cache, source, bake and
// machine packages import it; it imports none of them.
package iox
