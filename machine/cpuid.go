package machine

import (
	"math/bits"

	"github.com/govmm/govmm/kvm"
)

// CPUID leaves and bits govmm edits. References: Intel SDM Vol. 2A, "CPUID";
// AMD APM Vol. 3, Appendix E; Linux Documentation/virt/kvm/x86/cpuid.rst for
// the KVM leaves.
const (
	leafFeatures          = 0x1
	leafCacheParams       = 0x4 // Intel deterministic cache parameters
	leafPerfMon           = 0xA // architectural performance monitoring
	leafExtTopology       = 0xB // x2APIC extended topology
	leafExtTopologyV2     = 0x1F
	leafKVMSignature      = 0x4000_0000
	leafExtFeatures       = 0x8000_0001
	leafAddressSizes      = 0x8000_0008 // AMD: core count in ECX
	leafAMDExtendedAPICID = 0x8000_001E

	// Leaf 1 EBX: bits 31-24 initial APIC ID, 23-16 logical processors
	// per package.
	leaf1EBXAPICIDShift  = 24
	leaf1EBXLogicalShift = 16
	leaf1EBXLogicalMask  = 0xFF << leaf1EBXLogicalShift
	leaf1EBXAPICIDMask   = 0xFF << leaf1EBXAPICIDShift
	leaf1EDXHTT          = 1 << 28 // EBX[23:16] is valid
	leaf1ECXHypervisor   = 1 << 31 // "running under a hypervisor", reserved for that use
	// leaf1ECXTSCDeadline: the local APIC timer has TSC-deadline mode
	// (Intel SDM Vol. 3A §11.5.4.1). KVM emulates it for every in-kernel
	// local APIC but leaves the bit out of KVM_GET_SUPPORTED_CPUID; the
	// VMM sets it when KVM_CAP_TSC_DEADLINE_TIMER is present (api.rst).
	// Without it Linux calibrates the APIC timer against the PIT at boot.
	leaf1ECXTSCDeadline = 1 << 24

	// Leaf 4 EAX: bits 31-26 cores per package - 1, 25-14 threads sharing
	// this cache - 1.
	leaf4EAXCoresShift      = 26
	leaf4EAXCoresMask       = 0x3F << leaf4EAXCoresShift
	leaf4EAXSharingShift    = 14
	leaf4EAXSharingMask     = 0xFFF << leaf4EAXSharingShift
	leaf4EAXCacheLevelShift = 5
	leaf4EAXCacheLevelMask  = 0x7

	// Leaf 0xB/0x1F ECX bits 15-8: level type.
	topologyLevelInvalid = 0
	topologyLevelSMT     = 1
	topologyLevelCore    = 2
	topologyTypeShift    = 8

	// Leaf 0x8000_0001 ECX bit 1: CmpLegacy, "core multi-processing legacy
	// mode": the package has more than one core (AMD APM Vol. 3, E.4.2).
	extFeaturesECXCmpLegacy = 1 << 1
	// Leaf 0x8000_0008 ECX: bits 7-0 number of cores - 1, 15-12 the number
	// of APIC ID bits that identify the core (AMD APM Vol. 3, E.4.7).
	addrSizesECXNCMask          = 0xFF
	addrSizesECXCoreIDSizeShift = 12
	addrSizesECXCoreIDSizeMask  = 0xF << addrSizesECXCoreIDSizeShift
)

// kvmSignature is "KVMKVMKVM\0\0\0" as EBX, ECX, EDX of leaf 0x4000_0000.
// Linux looks for it to enable kvm-clock and the other paravirtual features
// listed in leaf 0x4000_0001 (Documentation/virt/kvm/x86/cpuid.rst).
var kvmSignature = [3]uint32{0x4b4d564b, 0x564b4d56, 0x0000004d}

// kvmFeaturesLeaf is KVM_CPUID_FEATURES; the signature leaf's EAX holds the
// highest hypervisor leaf.
const kvmFeaturesLeaf = 0x4000_0001

// vcpuCPUID derives vCPU id's CPUID table from KVM's supported list for a
// machine of n vCPUs arranged as one socket of n single-threaded cores, with
// APIC ID = vCPU index. tscDeadline says KVM emulates the TSC-deadline timer.
func vcpuCPUID(supported []kvm.CPUIDEntry, id, n int, tscDeadline bool) []kvm.CPUIDEntry {
	apicID := uint32(id)
	// Bits of the APIC ID that number the cores: ceil(log2(n)).
	coreBits := uint32(bits.Len(uint(n - 1)))
	out := make([]kvm.CPUIDEntry, 0, len(supported)+3)
	haveSignature := false
	for _, e := range supported {
		switch e.Function {
		case leafFeatures:
			e.EBX &^= leaf1EBXAPICIDMask | leaf1EBXLogicalMask
			e.EBX |= apicID<<leaf1EBXAPICIDShift | uint32(n)<<leaf1EBXLogicalShift
			if n > 1 {
				e.EDX |= leaf1EDXHTT
			}
			e.ECX |= leaf1ECXHypervisor
			if tscDeadline {
				e.ECX |= leaf1ECXTSCDeadline
			}
		case leafCacheParams:
			// Each cache level reports how many cores share it: the
			// last-level cache is shared by the whole package, L1/L2 are
			// private to a core.
			level := (e.EAX >> leaf4EAXCacheLevelShift) & leaf4EAXCacheLevelMask
			sharing := uint32(0)
			if level >= 3 {
				sharing = uint32(n - 1)
			}
			e.EAX &^= leaf4EAXCoresMask | leaf4EAXSharingMask
			if e.EAX != 0 { // a cache is described (type != 0)
				e.EAX |= uint32(n-1)<<leaf4EAXCoresShift | sharing<<leaf4EAXSharingShift
			}
		case leafPerfMon:
			// No virtual PMU: a guest that sees version 0 leaves the
			// performance counters alone, which keeps it from exiting on
			// PMU MSRs (and from misbehaving under nested virtualization).
			e.EAX, e.EBX, e.ECX, e.EDX = 0, 0, 0, 0
		case leafExtTopology, leafExtTopologyV2:
			// Rewritten below with our own subleaves.
			continue
		case leafKVMSignature:
			haveSignature = true
			e.EBX, e.ECX, e.EDX = kvmSignature[0], kvmSignature[1], kvmSignature[2]
			if e.EAX < kvmFeaturesLeaf {
				e.EAX = kvmFeaturesLeaf
			}
		case leafExtFeatures:
			if n > 1 {
				e.ECX |= extFeaturesECXCmpLegacy
			}
		case leafAddressSizes:
			e.ECX &^= addrSizesECXNCMask | addrSizesECXCoreIDSizeMask
			e.ECX |= uint32(n-1) | coreBits<<addrSizesECXCoreIDSizeShift
		case leafAMDExtendedAPICID:
			// EAX: extended APIC ID; EBX[7:0]: core ID, EBX[15:8]: threads
			// per core - 1; ECX[7:0]: node ID (AMD APM Vol. 3, E.4.16).
			e.EAX = apicID
			e.EBX = apicID & 0xFF
			e.ECX = 0
		}
		out = append(out, e)
	}
	if !haveSignature {
		out = append(out, kvm.CPUIDEntry{Function: leafKVMSignature, EAX: kvmFeaturesLeaf,
			EBX: kvmSignature[0], ECX: kvmSignature[1], EDX: kvmSignature[2]})
	}
	// Leaf 0xB (and 0x1F where the host has it): level 0 is SMT with one
	// thread per core, level 1 is the core level with n cores; EAX is the
	// shift to the next level's ID, EBX the processors at this level, EDX
	// the x2APIC ID (Intel SDM Vol. 2A, CPUID leaf 0BH).
	for _, leaf := range []uint32{leafExtTopology, leafExtTopologyV2} {
		if leaf == leafExtTopologyV2 && !hasLeaf(supported, leafExtTopologyV2) {
			continue
		}
		sig := uint32(kvm.CPUIDFlagSignificantIndex)
		out = append(out,
			kvm.CPUIDEntry{Function: leaf, Index: 0, Flags: sig, EAX: 0, EBX: 1,
				ECX: topologyLevelSMT<<topologyTypeShift | 0, EDX: apicID},
			kvm.CPUIDEntry{Function: leaf, Index: 1, Flags: sig, EAX: coreBits, EBX: uint32(n),
				ECX: topologyLevelCore<<topologyTypeShift | 1, EDX: apicID},
			kvm.CPUIDEntry{Function: leaf, Index: 2, Flags: sig,
				ECX: topologyLevelInvalid<<topologyTypeShift | 2, EDX: apicID},
		)
	}
	return out
}

func hasLeaf(entries []kvm.CPUIDEntry, fn uint32) bool {
	for _, e := range entries {
		if e.Function == fn {
			return true
		}
	}
	return false
}

// findLeaf returns the entry for (fn, index), or false.
func findLeaf(entries []kvm.CPUIDEntry, fn, index uint32) (kvm.CPUIDEntry, bool) {
	for _, e := range entries {
		if e.Function == fn && (e.Flags&kvm.CPUIDFlagSignificantIndex == 0 || e.Index == index) {
			return e, true
		}
	}
	return kvm.CPUIDEntry{}, false
}
