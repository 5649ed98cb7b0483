// Package gobuild is an artifact kind of the fetch stage: a recipe's
// `artifacts: [{go: {...}}]` (a Spec) becomes a statically linked Go
// program in the content-addressed cache, built from a module at a version
// the way its project's release build does, so that the same lock gives the
// same binary bytes on any machine. The tree stage then puts the binary
// into the image like a fetched file.
//
// # The build
//
// Builder.Build writes a throw-away module in a private work dir: it
// requires Spec.Module at Spec.Version, takes over that module's go and
// godebug lines and its module-to-module replacements (so the binaries get
// upstream's GODEBUG defaults and dependency versions), replaces the
// Kubernetes staging modules by their published v0.N.M when
// Spec.ReplaceStaging, and names the packages to build in a tool directive
// so that `go mod tidy` records every module they need in go.sum. Then
// `go build -trimpath` with CGO_ENABLED=0, GOOS=linux, GOARCH=amd64,
// GOAMD64=v1, the tags and linker flags of the Spec and an empty build ID.
// The go command runs with GOENV=off, GOWORK=off and GOTOOLCHAIN=local, and
// must be exactly Spec.Toolchain (`go env GOVERSION`); GOCACHE is the
// Builder's (labbake keeps it in its cache dir, so a rebuild only links),
// GOMODCACHE a fresh dir of the work dir.
//
// # The toolchain
//
// The host's go command (Builder.Go, else "go" on PATH) builds when it is
// exactly Spec.Toolchain. Otherwise, or when there is none, the toolchain
// is an input like the modules, fetched the way the go command's
// GOTOOLCHAIN switching does: the module golang.org/toolchain at
// v0.0.1-<release>.<GOHOSTOS>-<GOHOSTARCH> (ToolchainVersion), its zip from
// the first http(s) or file:// proxy of the user's GOPROXY that has it (a
// 404 or 410 moves on along the list, another error only after "|";
// "direct" is skipped, "off" stops; default https://proxy.golang.org). Its
// h1 hash (dirhash.HashZip) must be the one labbake.lock pins under
// ToolchainKey ("gotoolchain go1.26.8 linux/amd64", the host's platform),
// else the one the Go checksum database gives (GOSUMDB, default
// sum.golang.org, reached through the proxy when it serves it, as the go
// command does; GOSUMDB=off or a GONOSUMDB/GOPRIVATE pattern matching
// golang.org/toolchain takes it unverified, with a warning); any other is
// an error naming the zip and both hashes (iox.ErrDigestMismatch), and
// nothing is stored. The zip then goes into the cache (ref ToolchainKey →
// its blob) and is unpacked once under Builder.Toolchains (labbake's
// CACHE/go/toolchain/go1.26.8.linux-amd64/, written to a temp dir and
// renamed, with the zip's file modes, the go command's executable bits and
// each _go.mod copied to go.mod as the go command does); its bin/go builds.
// Result.Toolchain is the hash, which the caller pins. A second build finds
// the unpacked dir, or unpacks the cached zip (a bundle's), with no
// request; offline without either, or frozen (Pins.Frozen) without a pin,
// the build fails before any download, saying what is missing (ErrNoGo or
// ErrToolchain with iox.ErrOffline; ErrUnpinned). The same release builds
// the same bytes whichever go command runs (-trimpath, an empty build ID).
//
// # Pins and the cache
//
// Four things pin a go input: the throw-away module's go.sum (every
// module's hash, vouched for by the Go checksum database when it was first
// resolved), the toolchain's release, the hash of the toolchain module
// when it was fetched, and the output's sha256. labbake.lock records the
// first under SumKey, the third under ToolchainKey and the last under
// BinaryKey (the release is part of all three keys). In the cache (Store)
// live:
//
//	blob  go.sum                          ref "gosum …" (SumKey) → it
//	blob  each module file the build read (MODULE/@v/VERSION.info, .mod, .zip)
//	blob  the module index: "DIGEST PATH" lines naming them
//	                                      ref "gomodules <go.sum digest>" → it
//	blob  the output: the binary, or a tar of the binaries for several packages
//	                                      ref "gobuild <BuildKey>" → it
//	blob  a fetched toolchain's zip       ref "gotoolchain …" (ToolchainKey) → it
//
// The module files are content-addressed, so modules shared by several
// programs are stored once. BuildKey hashes everything that goes into the
// output (BinaryKey's fields and the go.sum digest): a second build of the
// same input finds the ref and runs no go command at all. When the output
// is missing but the go.sum's modules are cached, the build serves them to
// go as GOPROXY=file://… with GOSUMDB=off and the pinned go.sum written into
// the throw-away module, so the go command verifies every file against the
// pinned hashes; a go.sum that comes out of `go mod tidy` different from the
// pinned one (a module not pinned) refuses the build. Offline, or when the
// modules are not cached, nothing else is tried: an offline build without
// them is an error wrapping iox.ErrOffline. Online, the go command reaches
// the user's GOPROXY and GOSUMDB (GONOSUMDB, GOPRIVATE and GONOPROXY are
// honoured) and the module files it downloaded are stored afterwards.
package gobuild
