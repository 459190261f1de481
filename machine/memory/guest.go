package memory

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange is returned (wrapped) for any access that is not entirely
// inside one RAM region. Guest-supplied addresses must always go through the
// checked accessors below, so a hostile guest can never make govmm touch host
// memory outside guest RAM.
var ErrOutOfRange = errors.New("guest address out of range")

// Region is one contiguous piece of guest RAM and the host memory behind it.
type Region struct {
	Range
	// Host is the host mapping of the region: Host[i] is guest-physical
	// address Start+i.
	Host []byte
}

// Guest is the guest's RAM: a small, sorted set of regions.
type Guest struct {
	Regions []Region
	owned   bool // mapped by New, so Close unmaps
}

// New maps anonymous host memory for every range of the layout. The mappings
// are MAP_NORESERVE: pages cost host memory only once the guest touches them.
func New(layout []Range) (*Guest, error) {
	g := &Guest{owned: true}
	for _, r := range layout {
		if r.Size == 0 || r.Size%PageSize != 0 || r.Start%PageSize != 0 {
			g.Close()
			return nil, fmt.Errorf("memory: region %#x+%#x is not page aligned", r.Start, r.Size)
		}
		b, err := mapAligned(r.Size)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("memory: mmap %d MiB of guest RAM: %w", r.Size>>20, err)
		}
		// Transparent huge pages cut TLB misses on the host side of EPT/NPT
		// walks; a failure only costs speed.
		_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
		g.Regions = append(g.Regions, Region{Range: r, Host: b})
	}
	return g, nil
}

// hostHugePageSize is the size of an x86-64 PMD-level page: 2 MiB.
const hostHugePageSize = 2 << 20

// mapAligned maps size bytes of anonymous memory starting on a 2 MiB
// boundary. Guest RAM regions start on 2 MiB boundaries in guest-physical
// space; only if the host mapping is aligned the same way can a host
// transparent huge page back a whole guest 2 MiB page, so that KVM maps it
// with one large EPT/NPT entry (the mapping level is limited to what both
// sides share). Linux aligns large anonymous mappings to 2 MiB by itself
// only since 6.7, so the region is over-allocated by 2 MiB and trimmed, as
// QEMU does for its RAM blocks. MAP_NORESERVE: pages cost host memory only
// once the guest touches them.
func mapAligned(size uint64) ([]byte, error) {
	span := uintptr(size) + hostHugePageSize
	p, err := unix.MmapPtr(-1, 0, nil, span, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	head := (hostHugePageSize - uintptr(p)%hostHugePageSize) % hostHugePageSize
	tail := span - head - uintptr(size)
	if head > 0 {
		if err := unix.MunmapPtr(p, head); err != nil {
			unix.MunmapPtr(p, span)
			return nil, err
		}
	}
	aligned := unsafe.Add(p, head)
	if tail > 0 {
		if err := unix.MunmapPtr(unsafe.Add(aligned, size), tail); err != nil {
			unix.MunmapPtr(aligned, uintptr(size)+tail)
			return nil, err
		}
	}
	return unsafe.Slice((*byte)(aligned), size), nil
}

// NewFromBytes wraps existing buffers as guest RAM, for tests: a fake guest
// memory that needs no mmap and no KVM.
func NewFromBytes(regions ...Region) *Guest {
	return &Guest{Regions: regions}
}

// Close unmaps the guest RAM. The Guest must not be used afterwards.
func (g *Guest) Close() error {
	var first error
	if g.owned {
		for _, r := range g.Regions {
			if err := unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(r.Host)), uintptr(len(r.Host))); err != nil && first == nil {
				first = err
			}
		}
	}
	g.Regions = nil
	return first
}

// Size returns the total amount of guest RAM in bytes.
func (g *Guest) Size() uint64 {
	var n uint64
	for _, r := range g.Regions {
		n += r.Size
	}
	return n
}

// Slice returns the host bytes behind guest-physical [gpa, gpa+n). The range
// must lie inside a single region. The slice aliases guest memory: the guest
// can change it at any time, so callers that parse it must copy first or
// tolerate concurrent change.
func (g *Guest) Slice(gpa, n uint64) ([]byte, error) {
	for i := range g.Regions {
		r := &g.Regions[i]
		if r.Contains(gpa, n) {
			off := gpa - r.Start
			return r.Host[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, +%#x)", ErrOutOfRange, gpa, n)
}

// ReadAt copies guest-physical memory at off into p (io.ReaderAt).
func (g *Guest) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative address", ErrOutOfRange)
	}
	b, err := g.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(p, b), nil
}

// WriteAt copies p into guest-physical memory at off (io.WriterAt).
func (g *Guest) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative address", ErrOutOfRange)
	}
	b, err := g.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(b, p), nil
}
