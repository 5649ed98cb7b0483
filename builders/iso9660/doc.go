// Package iso9660 writes the cloud-init NoCloud seed of a lab machine: a
// small ISO 9660 image (volume id `cidata`) holding a flat root directory —
// `meta-data`, `user-data`, `network-config` — with Rock Ridge and Joliet,
// the layout `genisoimage -volid cidata -joliet -rock` makes. It is the last
// step for a machine's seed: the seed builder renders the cloud-init files
// and hands them here; the resulting bytes go to output/seed/<machine>.iso
// and are attached to the VM as a CD-ROM.
//
// The image is built in memory as bytes, like the ESP in builders/disk:
//
//	sectors 0-15   system area (zeros)
//	16             primary volume descriptor (volume id upper-cased to d-characters)
//	17             Joliet supplementary volume descriptor (escape %/E, UCS-2 level 3)
//	18             volume descriptor set terminator
//	19-22          L and M path tables, primary then Joliet
//	23             Rock Ridge continuation area of the root's "." record (the ER entry)
//	24-            primary root directory (ISO 9660 level 2 names + SUSP/RRIP 1.09:
//	               SP, RR, PX, NM, TF, CE), then the Joliet root directory
//	then           each file's data, one extent per file shared by both hierarchies,
//	               in name order, then 150 zero sectors of padding (as genisoimage
//	               pads), all counted in the volume size.
//
// Every date is Options.ModTime; nothing else varies, so equal inputs give
// equal bytes whatever order the files are given in.
//
// Why not go-diskfs (v1.9.4, in go.mod), which DESIGN.md first named:
// checked on 3 seed files, its iso9660 writer does write Rock Ridge (RRIP
// 1.12, "IEEE_P1282") and Joliet too (FinalizeOptions.Joliet), but
//   - it is not reproducible: the volume descriptor dates are time.Now()
//     (and the expiration date is set to now as well, so the volume
//     claims to expire when made), and directory records and Rock Ridge
//     TF take mtime/atime/ctime of files staged in a host workspace
//     directory, so two runs 1.5 s apart differed in 51 bytes;
//   - modes and owners also come from the staged host files (the root
//     came out drwx------, files rw-r--r-- by umask) rather than from the
//     caller;
//   - the image file is whatever size the caller created (10 MiB for a
//     29-sector volume) instead of the volume size plus genisoimage's
//     padding, and the PVD volume id is stored as given ("cidata"), not
//     as d-characters;
//   - its package imports github.com/djherbis/times, which go.mod did not
//     require (the tests here use its reader, so go.mod gained it as an
//     indirect requirement); its reader also strips a leading and a
//     trailing '.' from Rock Ridge names (".hidden" reads as "hidden").
//
// Writing the few structures a flat seed needs is shorter than working
// around all that, and exact.
//
// Choices:
//   - Primary names are ISO 9660 level 2 (up to 30 d-characters of name
//     and extension, ".", ";1"): "user-data" is USER_DATA.;1. Level 1's
//     8.3 would fold most seed names onto each other (USER_DAT, NETWORK_),
//     while level 2 names are read by every reader in use (Linux isofs,
//     Windows, macOS, libisofs, isoinfo, go-diskfs) and stay close to
//     the real name for a reader that ignores both Rock Ridge and Joliet.
//     Names that fold together get a numeric tail (A_B1.).
//   - Rock Ridge is RRIP 1.09 (ER "RRIP_1991A", 36-byte PX without a file
//     serial number, RR entries), the version genisoimage and so
//     cloud-localds write. Linux only uses Rock Ridge when it finds the
//     ER entry through the root's "." record, which is why the ER is
//     written, in a continuation area since it does not fit the record.
//     CE is the last entry of that record (go-diskfs' reader follows it
//     only there).
//   - Joliet names carry no ";1" version (Linux and Windows accept both;
//     the names then read exactly as given).
//   - blkid (libblkid 2.38) reads LABEL from the Joliet volume id where it
//     agrees case-insensitively with the primary one, so the PVD holds
//     CIDATA as ISO 9660 requires and blkid still prints LABEL="cidata";
//     its UUID is the PVD modification date, i.e. ModTime.
//   - Empty files point at the first padding sector (zeros, inside the
//     volume).
package iso9660
