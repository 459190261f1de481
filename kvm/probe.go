package kvm

import (
	"bufio"
	"os"
	"strings"
)

// Backend says what implements /dev/kvm on this host.
type Backend int

// KVM backends.
const (
	// BackendUnknown: /dev/kvm works but no known module was found.
	BackendUnknown Backend = iota
	// BackendVMX is hardware-assisted KVM on Intel VT-x (kvm_intel).
	BackendVMX
	// BackendSVM is hardware-assisted KVM on AMD-V (kvm_amd).
	BackendSVM
	// BackendPVM is kvm_pvm, Pagetable-based Virtual Machine: software
	// virtualization with shadow paging for hosts without VMX/SVM. Its
	// guest kernel mode is emulated, far too slowly to boot a stock Linux.
	BackendPVM
)

func (b Backend) String() string {
	switch b {
	case BackendVMX:
		return "hardware-assisted (Intel VT-x, kvm_intel)"
	case BackendSVM:
		return "hardware-assisted (AMD-V, kvm_amd)"
	case BackendPVM:
		return "PVM (software virtualization, kvm_pvm)"
	}
	return "unknown"
}

// HardwareAssisted reports whether guests run on VMX or SVM.
func (b Backend) HardwareAssisted() bool { return b == BackendVMX || b == BackendSVM }

// DetectBackend works out which module serves /dev/kvm, from the loaded
// modules in /sys/module and, failing that, the CPU flags in /proc/cpuinfo.
// sysRoot and procRoot are normally "/sys" and "/proc" (tests pass fakes).
func DetectBackend(sysRoot, procRoot string) Backend {
	loaded := func(m string) bool {
		_, err := os.Stat(sysRoot + "/module/" + m)
		return err == nil
	}
	switch {
	case loaded("kvm_pvm"):
		return BackendPVM
	case loaded("kvm_intel"):
		return BackendVMX
	case loaded("kvm_amd"):
		return BackendSVM
	}
	// Built-in modules do not always appear in /sys/module; the CPU flags
	// still tell whether hardware virtualization is there.
	vmx, svm := cpuFlags(procRoot + "/cpuinfo")
	switch {
	case vmx:
		return BackendVMX
	case svm:
		return BackendSVM
	}
	return BackendUnknown
}

// cpuFlags reports whether the first CPU's flags include vmx or svm.
func cpuFlags(path string) (vmx, svm bool) {
	f, err := os.Open(path)
	if err != nil {
		return false, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, fl := range strings.Fields(line) {
			switch fl {
			case "vmx":
				vmx = true
			case "svm":
				svm = true
			}
		}
		return vmx, svm
	}
	return false, false
}
