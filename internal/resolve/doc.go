// Package resolve is the fetch stage between the recipe and the plan: it
// pins every input that lives outside the lab dir — Debian bases built by
// mmdebstrap, OCI images, URLs and the checksum files that name their
// digests — and makes sure each one's bytes are in the content-addressed
// cache (internal/cache), through internal/source and its debian and oci
// packages. It reads and records labbake.lock, refuses unlocked inputs when
// frozen, and opens no connection when offline.
package resolve
