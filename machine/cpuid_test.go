package machine

import (
	"testing"

	"github.com/govmm/govmm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSupported is a small KVM_GET_SUPPORTED_CPUID answer, as an AMD host
// gives it.
func fakeSupported() []kvm.CPUIDEntry {
	return []kvm.CPUIDEntry{
		{Function: 0x0, EAX: 0xD},
		{Function: leafFeatures, EAX: 0x00060FB1, EBX: 0xFF0A0800, ECX: 0x0, EDX: 0x078BFBFF},
		{Function: leafPerfMon, EAX: 0x07300402, EBX: 0x1},
		{Function: leafExtTopology, Index: 0, Flags: kvm.CPUIDFlagSignificantIndex, EAX: 7, EBX: 99},
		{Function: leafKVMSignature, EAX: 0x40000001},
		{Function: leafExtFeatures},
		{Function: leafAddressSizes, ECX: 0xFF},
		{Function: leafAMDExtendedAPICID, EAX: 99, EBX: 99, ECX: 99},
	}
}

func TestVCPUCPUIDTopology(t *testing.T) {
	const n = 6
	for id := 0; id < n; id++ {
		c := vcpuCPUID(fakeSupported(), id, n, true)
		l1, ok := findLeaf(c, leafFeatures, 0)
		require.True(t, ok)
		assert.EqualValues(t, id, l1.EBX>>leaf1EBXAPICIDShift, "initial APIC ID")
		assert.EqualValues(t, n, (l1.EBX>>leaf1EBXLogicalShift)&0xFF, "logical processors")
		assert.NotZero(t, l1.EDX&leaf1EDXHTT)
		assert.NotZero(t, l1.ECX&leaf1ECXHypervisor)
		assert.NotZero(t, l1.ECX&leaf1ECXTSCDeadline)

		smt, ok := findLeaf(c, leafExtTopology, 0)
		require.True(t, ok)
		assert.EqualValues(t, 1, smt.EBX)
		assert.EqualValues(t, id, smt.EDX, "x2APIC ID")
		core, ok := findLeaf(c, leafExtTopology, 1)
		require.True(t, ok)
		assert.EqualValues(t, 3, core.EAX, "6 cores need 3 APIC ID bits")
		assert.EqualValues(t, n, core.EBX)
		assert.EqualValues(t, topologyLevelCore, (core.ECX>>topologyTypeShift)&0xFF)
		end, ok := findLeaf(c, leafExtTopology, 2)
		require.True(t, ok)
		assert.EqualValues(t, topologyLevelInvalid, (end.ECX>>topologyTypeShift)&0xFF)

		amd, _ := findLeaf(c, leafAddressSizes, 0)
		assert.EqualValues(t, n-1, amd.ECX&addrSizesECXNCMask)
		ext, _ := findLeaf(c, leafAMDExtendedAPICID, 0)
		assert.EqualValues(t, id, ext.EAX)
		pmu, _ := findLeaf(c, leafPerfMon, 0)
		assert.Zero(t, pmu.EAX, "no virtual PMU")
	}
}

func TestVCPUCPUIDSignatureAndOptions(t *testing.T) {
	c := vcpuCPUID(fakeSupported(), 0, 1, false)
	l1, _ := findLeaf(c, leafFeatures, 0)
	assert.Zero(t, l1.ECX&leaf1ECXTSCDeadline, "only set when KVM emulates it")
	assert.Zero(t, l1.EDX&leaf1EDXHTT, "one CPU: no HTT")
	sig, ok := findLeaf(c, leafKVMSignature, 0)
	require.True(t, ok)
	assert.Equal(t, "KVMKVMKVM\x00\x00\x00", string(le32s(sig.EBX, sig.ECX, sig.EDX)))

	// A host list without the signature leaf still gets one.
	var noSig []kvm.CPUIDEntry
	for _, e := range fakeSupported() {
		if e.Function != leafKVMSignature {
			noSig = append(noSig, e)
		}
	}
	_, ok = findLeaf(vcpuCPUID(noSig, 0, 1, false), leafKVMSignature, 0)
	assert.True(t, ok)
}

func le32s(words ...uint32) []byte {
	var b []byte
	for _, w := range words {
		b = append(b, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	return b
}
