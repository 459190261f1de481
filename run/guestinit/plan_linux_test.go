//go:build linux

package guestinit

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/run/wire"
)

// describe renders a step in one line for comparing plans.
func describe(s mountStep) string {
	d := fmt.Sprintf("%s %s -> %s", s.fstype, s.source, s.target)
	if s.flags&unix.MS_MOVE != 0 {
		d = fmt.Sprintf("move %s -> %s", s.source, s.target)
	}
	if s.flags&unix.MS_RDONLY != 0 {
		d += " ro"
	}
	if s.onMissing == skipIfNoDir {
		d += " skip-if-no-dir"
	}
	if s.optional {
		d += " optional"
	}
	return d
}

func describeAll(steps []mountStep) []string {
	var out []string
	for _, s := range steps {
		out = append(out, describe(s))
	}
	return out
}

func TestPlanMountsBlockRoot(t *testing.T) {
	cfg := &wire.Config{
		Args:  []string{"true"},
		Root:  &wire.Root{Kind: wire.RootBlock, Source: "/dev/vda", ReadOnly: true},
		Tmpfs: []string{"/tmp", "/var/tmp", "/src/build"},
		// Listed child first: the plan must mount /src before
		// /src/out, or /src would hide it.
		Shares: []wire.Share{
			{Tag: "out", Path: "/src/out"},
			{Tag: "src", Path: "/src", ReadOnly: true},
			{Tag: "cache", Path: "/tmp/cache"},
		},
	}
	steps, newRoot := planMounts(cfg)
	assert.Equal(t, newRootDir, newRoot)
	assert.Equal(t, []string{
		"ext4 /dev/vda -> /newroot ro",
		"move /dev -> /newroot/dev skip-if-no-dir",
		"move /proc -> /newroot/proc skip-if-no-dir",
		"move /sys -> /newroot/sys skip-if-no-dir",
		"devpts devpts -> /newroot/dev/pts optional",
		"tmpfs tmpfs -> /newroot/dev/shm optional",
		// Depth 1, tmpfs before shares:
		"tmpfs tmpfs -> /newroot/tmp skip-if-no-dir",
		"9p src -> /newroot/src ro",
		// Depth 2, in the config's order:
		"tmpfs tmpfs -> /newroot/var/tmp skip-if-no-dir",
		"tmpfs tmpfs -> /newroot/src/build skip-if-no-dir",
		"9p out -> /newroot/src/out",
		"9p cache -> /newroot/tmp/cache",
	}, describeAll(steps))

	root := steps[0]
	assert.True(t, root.waitSource, "the disk may appear late")
	assert.Equal(t, "/", root.path)
	for _, s := range steps {
		if s.fstype == "9p" {
			assert.Equal(t, ninePOptions, s.data)
			assert.True(t, s.retryNoEnt)
			assert.Equal(t, failIfNoDir, s.onMissing, "a share with no mount point is an error")
		}
	}
	assert.Equal(t, `the share for /src/out (tag "out")`, steps[10].what)
	assert.Equal(t, "/src/out", steps[10].path)
}

func TestPlanMounts9PRootAndFSType(t *testing.T) {
	steps, _ := planMounts(&wire.Config{Args: []string{"true"},
		Root: &wire.Root{Kind: wire.Root9P, Source: "rootfs"}})
	assert.Equal(t, "9p rootfs -> /newroot", describe(steps[0]))
	assert.Equal(t, ninePOptions, steps[0].data)
	assert.False(t, steps[0].waitSource, "a tag is not a file to wait for")

	steps, _ = planMounts(&wire.Config{Args: []string{"true"},
		Root: &wire.Root{Kind: wire.RootBlock, Source: "/dev/vdb", FSType: "btrfs"}})
	assert.Equal(t, "btrfs /dev/vdb -> /newroot", describe(steps[0]))
}

func TestPlanMountsNoRoot(t *testing.T) {
	cfg := &wire.Config{
		Args:   []string{"true"},
		Tmpfs:  []string{"/tmp"},
		Shares: []wire.Share{{Tag: "work", Path: "/work", ReadOnly: true}},
	}
	steps, newRoot := planMounts(cfg)
	assert.Empty(t, newRoot, "the command runs in the initramfs")
	assert.Equal(t, []string{
		"devpts devpts -> /dev/pts optional",
		"tmpfs tmpfs -> /dev/shm optional",
		"tmpfs tmpfs -> /tmp skip-if-no-dir",
		"9p work -> /work ro",
	}, describeAll(steps))
}

func TestEarlyMounts(t *testing.T) {
	var got []string
	for _, m := range earlyMounts() {
		require.Empty(t, m.data)
		got = append(got, describe(m))
	}
	assert.Equal(t, []string{"devtmpfs devtmpfs -> /dev", "proc proc -> /proc", "sysfs sysfs -> /sys"}, got)
}

func TestDepth(t *testing.T) {
	assert.Equal(t, 1, depth("/tmp"))
	assert.Equal(t, 3, depth("/a/b/c"))
}
