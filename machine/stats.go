package machine

import (
	"cmp"
	"slices"
	"time"

	"github.com/govmm/govmm/kvm"
)

// maxCountedExit bounds the exit reasons counted individually; higher
// numbers share the last slot.
const maxCountedExit = 64

// Exit statistics, the VMM's view of what kvm_stat shows from the kernel's:
// every KVM_RUN that returns to userspace is one exit, counted by reason
// (the exit_reason field of struct kvm_run), with the time userspace spent
// handling it before re-entering the guest. Exits that KVM handles itself
// (APIC accesses, HLT with the in-kernel irqchip, EPT/NPT faults on RAM,
// CPUID, most MSRs) never reach userspace and are not counted here; they
// are part of the time "in KVM_RUN".
//
// Each vCPU goroutine records into its own exitRecorder, without locks or
// atomics; the machine merges them after the vCPUs have stopped.

// reasonStat is the count and handling time of one exit reason.
type reasonStat struct {
	count uint64
	time  time.Duration
}

// accessStat counts the exits at one I/O port or MMIO address.
type accessStat struct {
	reads, writes uint64
	time          time.Duration
}

// exitRecorder is one vCPU's statistics.
type exitRecorder struct {
	inGuest  time.Duration // inside KVM_RUN
	reasons  [maxCountedExit]reasonStat
	detailed bool                   // record per port and per address (Config.Stats)
	ports    map[uint16]*accessStat // I/O exits by port
	mmio     map[uint64]*accessStat // MMIO exits by address
}

func newExitRecorder(detailed bool) *exitRecorder {
	r := &exitRecorder{detailed: detailed}
	if detailed {
		r.ports = map[uint16]*accessStat{}
		r.mmio = map[uint64]*accessStat{}
	}
	return r
}

// exit records one exit and how long its handling took.
func (r *exitRecorder) exit(reason kvm.ExitReason, ev *exitEvent, d time.Duration) {
	i := min(uint32(reason), maxCountedExit-1)
	r.reasons[i].count++
	r.reasons[i].time += d
	if !r.detailed {
		return
	}
	var s *accessStat
	switch ev.kind {
	case eventIO:
		if s = r.ports[ev.port]; s == nil {
			s = &accessStat{}
			r.ports[ev.port] = s
		}
	case eventMMIO:
		if s = r.mmio[ev.addr]; s == nil {
			s = &accessStat{}
			r.mmio[ev.addr] = s
		}
	default:
		return
	}
	if ev.write {
		s.writes++
	} else {
		s.reads++
	}
	s.time += d
}

// Stats is what the vCPUs saw, for `govmm boot --stats`.
type Stats struct {
	// Wall is the time from Run to the end of the run; InGuest the sum
	// over vCPUs of the time inside KVM_RUN (running guest code, or in
	// KVM handling the exits it handles itself, or halted).
	Wall    time.Duration `json:"wall_ns"`
	InGuest time.Duration `json:"in_guest_ns"`
	// Exits are the exits to userspace by reason, most frequent first.
	Exits []ReasonStats `json:"exits"`
	// Ports and MMIO are the I/O and MMIO exits by port and by address,
	// each with the device that owns it; empty unless Config.Stats.
	Ports []AccessStats `json:"ports,omitempty"`
	MMIO  []AccessStats `json:"mmio,omitempty"`
	// Devices sums Ports and MMIO by device.
	Devices []DeviceStats `json:"devices,omitempty"`
}

// ReasonStats is the exits of one reason.
type ReasonStats struct {
	Reason string        `json:"reason"` // e.g. "KVM_EXIT_IO"
	Count  uint64        `json:"count"`
	Time   time.Duration `json:"handling_ns"` // userspace time handling them
}

// AccessStats is the exits at one port or MMIO address.
type AccessStats struct {
	Addr   uint64        `json:"addr"`
	Device string        `json:"device"` // "" when no device claims it
	Reads  uint64        `json:"reads"`
	Writes uint64        `json:"writes"`
	Time   time.Duration `json:"handling_ns"`
}

// DeviceStats is the I/O or MMIO exits a device caused.
type DeviceStats struct {
	Device string        `json:"device"`
	Kind   string        `json:"kind"` // "pio" or "mmio"
	Exits  uint64        `json:"exits"`
	Time   time.Duration `json:"handling_ns"`
}

// unclaimedDevice names accesses no device claims.
const unclaimedDevice = "(unclaimed)"

// portDevice names the device at an I/O port, for statistics and traces.
func (m *Machine) portDevice(port uint16) string {
	if name, ok := m.ports.Lookup(port); ok {
		return name
	}
	return unclaimedDevice
}

// mmioDevice names the device at a guest-physical MMIO address.
func (m *Machine) mmioDevice(addr uint64) string {
	if name, ok := m.mmio.Lookup(addr); ok {
		return name
	}
	return unclaimedDevice
}

// Stats merges the vCPUs' statistics. Call it after Run has returned.
func (m *Machine) Stats() Stats {
	var s Stats
	s.Wall = m.ranFor
	var reasons [maxCountedExit]reasonStat
	ports := map[uint16]*accessStat{}
	mmio := map[uint64]*accessStat{}
	add := func(dst, src *accessStat) {
		dst.reads += src.reads
		dst.writes += src.writes
		dst.time += src.time
	}
	for _, v := range m.vcpus {
		r := v.rec
		s.InGuest += r.inGuest
		for i := range r.reasons {
			reasons[i].count += r.reasons[i].count
			reasons[i].time += r.reasons[i].time
		}
		for p, a := range r.ports {
			if ports[p] == nil {
				ports[p] = &accessStat{}
			}
			add(ports[p], a)
		}
		for p, a := range r.mmio {
			if mmio[p] == nil {
				mmio[p] = &accessStat{}
			}
			add(mmio[p], a)
		}
	}
	for i, r := range reasons {
		if r.count > 0 {
			s.Exits = append(s.Exits, ReasonStats{Reason: kvm.ExitReason(i).String(), Count: r.count, Time: r.time})
		}
	}
	slices.SortFunc(s.Exits, func(a, b ReasonStats) int { return cmp.Compare(b.Count, a.Count) })

	devs := map[[2]string]*DeviceStats{}
	account := func(kind, dev string, a *accessStat) {
		k := [2]string{kind, dev}
		d := devs[k]
		if d == nil {
			d = &DeviceStats{Device: dev, Kind: kind}
			devs[k] = d
		}
		d.Exits += a.reads + a.writes
		d.Time += a.time
	}
	for p, a := range ports {
		name := m.portDevice(p)
		s.Ports = append(s.Ports, AccessStats{Addr: uint64(p), Device: name, Reads: a.reads, Writes: a.writes, Time: a.time})
		account("pio", name, a)
	}
	for addr, a := range mmio {
		name := m.mmioDevice(addr)
		s.MMIO = append(s.MMIO, AccessStats{Addr: addr, Device: name, Reads: a.reads, Writes: a.writes, Time: a.time})
		account("mmio", name, a)
	}
	byExits := func(a, b AccessStats) int {
		return cmp.Or(cmp.Compare(b.Reads+b.Writes, a.Reads+a.Writes), cmp.Compare(a.Addr, b.Addr))
	}
	slices.SortFunc(s.Ports, byExits)
	slices.SortFunc(s.MMIO, byExits)
	for _, d := range devs {
		s.Devices = append(s.Devices, *d)
	}
	slices.SortFunc(s.Devices, func(a, b DeviceStats) int {
		return cmp.Or(cmp.Compare(b.Exits, a.Exits), cmp.Compare(a.Device, b.Device))
	})
	return s
}

// ExitCounts returns the number of exits of each reason. Call it after
// Run has returned.
func (m *Machine) ExitCounts() map[kvm.ExitReason]uint64 {
	out := map[kvm.ExitReason]uint64{}
	for _, v := range m.vcpus {
		for i, r := range v.rec.reasons {
			if r.count > 0 {
				out[kvm.ExitReason(i)] += r.count
			}
		}
	}
	return out
}
