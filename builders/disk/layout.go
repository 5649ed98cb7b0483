package disk

import (
	"fmt"
	"strings"
)

// Sizes of the fixed partitions. Everything is aligned to 1 MiB.
const (
	MiB     = int64(1) << 20
	espSize = 200 * MiB
	// BIOSOffset and BIOSSize place the BIOS boot partition, where a
	// BIOS boot loader's core image goes (GRUB's core.img).
	BIOSOffset = 1 * MiB
	BIOSSize   = 1 * MiB
	// MinSize is the smallest disk labbake writes: the fixed partitions,
	// the GPT backup and a root filesystem of at least 32 MiB.
	MinSize = BIOSOffset + BIOSSize + espSize + 32*MiB + 1*MiB
)

// Partition is one GPT partition of the layout, in bytes.
type Partition struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	Type   string `json:"type"` // GPT partition type GUID
	GUID   string `json:"guid"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
}

// Layout is the partition table of a baked disk: a 1 MiB BIOS boot
// partition, a FAT32 EFI system partition and an ext4 root filling the rest.
type Layout struct {
	Size     int64
	DiskGUID string
	BIOS     Partition
	ESP      Partition
	Root     Partition
}

// IDs are the identifiers written into a disk. They are derived from the
// plan so that two builds of one plan give the same bytes.
type IDs struct {
	DiskGUID    string
	BIOSGUID    string
	ESPGUID     string
	RootGUID    string
	RootFSUUID  string // ext4 filesystem UUID (also its directory hash seed)
	ESPVolumeID uint32
}

// NewLayout places the partitions on a disk of size bytes.
func NewLayout(size int64, ids IDs) (Layout, error) {
	if size%MiB != 0 {
		return Layout{}, fmt.Errorf("disk size %d is not a multiple of 1 MiB", size)
	}
	if size < MinSize {
		return Layout{}, fmt.Errorf("disk size %d MiB is below the minimum of %d MiB", size/MiB, MinSize/MiB)
	}
	bios := Partition{Number: 1, Name: "bios", Type: "21686148-6449-6E6F-744E-656564454649", GUID: ids.BIOSGUID, Offset: BIOSOffset, Size: BIOSSize}
	esp := Partition{Number: 2, Name: "esp", Type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", GUID: ids.ESPGUID, Offset: bios.Offset + bios.Size, Size: espSize}
	rootOff := esp.Offset + esp.Size
	// The last MiB holds the backup GPT (33 sectors) and keeps the root aligned.
	root := Partition{Number: 3, Name: "root", Type: "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", GUID: ids.RootGUID, Offset: rootOff, Size: size - MiB - rootOff}
	return Layout{Size: size, DiskGUID: ids.DiskGUID, BIOS: bios, ESP: esp, Root: root}, nil
}

// Fstab renders /etc/fstab for a root filesystem with the given UUID and
// mount options (the recipe's disk.fstab.options).
func Fstab(rootUUID string, options []string) []byte {
	opts := append([]string{}, options...)
	opts = append(opts, "errors=remount-ro")
	var b strings.Builder
	b.WriteString("# /etc/fstab: written by labbake\n")
	b.WriteString("# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n")
	fmt.Fprintf(&b, "UUID=%s\t/\text4\t%s\t0\t1\n", rootUUID, strings.Join(opts, ","))
	return []byte(b.String())
}
