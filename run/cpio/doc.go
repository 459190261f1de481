// Package cpio writes initramfs archives in the cpio "newc" format, the one
// format the Linux kernel unpacks into its rootfs at boot (Linux
// Documentation/driver-api/early-userspace/buffer-format.rst).
//
// An archive is a sequence of entries, each a 110-byte ASCII header, the
// entry's name and its data, ended by an entry named "TRAILER!!!":
//
//	header  "070701" then 13 fields of 8 hexadecimal digits:
//	        c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize
//	        c_maj c_min c_rmaj c_rmin c_namesize c_chksum
//	name    c_namesize bytes, the name and its terminating NUL,
//	        then NULs up to a multiple of 4 bytes (counted from the
//	        start of the header)
//	data    c_filesize bytes (a file's contents, a symlink's target),
//	        then NULs up to a multiple of 4 bytes
//
// The kernel reads the archive front to back and creates each entry as it
// goes (init/initramfs.c): a file's directory must come before the file, so
// Writer refuses an entry whose parent it has not written (MkdirAll writes
// the missing ones). Everything Writer writes is reproducible: owner
// root:root, mtime 0, inode numbers counting up from 1.
package cpio
