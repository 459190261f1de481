package run

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/govmm/govmm/run/cpio"
	"github.com/govmm/govmm/run/kmod"
	"github.com/govmm/govmm/run/wire"
)

// selfExe is the running govmm binary, which becomes the guest's init. It
// is static (no cgo), so it runs in an initramfs with no libraries.
const selfExe = "/proc/self/exe"

// Device numbers of /dev/console (Linux Documentation/admin-guide/
// devices.txt: major 5, minor 1). The kernel opens /dev/console in the
// initramfs for the init's stdin, stdout and stderr (init/main.c,
// console_on_rootfs) before devtmpfs is mounted, so the archive must
// hold the node.
const (
	consoleMajor = 5
	consoleMinor = 1
)

// guestModuleDir is where the modules are in the initramfs.
const guestModuleDir = "/govmm/modules"

// guestModulePath is where the i-th module to load is in the initramfs;
// the index keeps names unique and shows the load order.
func guestModulePath(i int, m kmod.Module) string {
	return fmt.Sprintf("%s/%02d-%s", guestModuleDir, i, filepath.Base(m.Path))
}

// initramfsAlign is the alignment between two concatenated archives: the
// kernel looks for each archive's header at a 4-byte boundary and skips
// the zero bytes between (Documentation/driver-api/early-userspace/
// buffer-format.rst).
const initramfsAlign = 4

// buildInitramfs returns the guest's initramfs: the user's (if any), then
// govmm's archive with the init, its configuration and the modules. The
// kernel unpacks them in order into one root file system, so govmm's files
// win over the user's.
func buildInitramfs(user []byte, cfg *wire.Config, mods *modulePlan) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(user)
	for buf.Len()%initramfsAlign != 0 {
		buf.WriteByte(0)
	}
	w := cpio.NewWriter(&buf)
	for _, d := range []string{"/dev", "/proc", "/sys", "/tmp", "/newroot", guestModuleDir} {
		if err := w.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := w.CharDevice("/dev/console", 0o600, consoleMajor, consoleMinor); err != nil {
		return nil, err
	}
	if err := addFile(w, wire.InitPath, selfExe, 0o755); err != nil {
		return nil, fmt.Errorf("packing govmm itself as the init: %w", err)
	}
	conf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := w.MkdirAll(path.Dir(wire.ConfigPath), 0o755); err != nil {
		return nil, err
	}
	if err := w.File(wire.ConfigPath, 0o644, conf); err != nil {
		return nil, err
	}
	for i, m := range mods.files {
		if err := addFile(w, mods.guestPaths[i], m.Path, 0o644); err != nil {
			return nil, fmt.Errorf("module %s: %w", m.Name, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// addFile streams the host file src into the archive as name.
func addFile(w *cpio.Writer, name, src string, mode os.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return w.FileFrom(name, mode, fi.Size(), f)
}
