// Command guestbench measures a VMM's virtio block and network devices from
// inside a guest, and counts the VM exits each workload costs.
//
// It has two halves, one static binary (CGO_ENABLED=0) for both:
//
//	guestbench guest [-server 192.0.2.1:5200] [-disk /dev/vdb]
//	guestbench host -case NAME=COMMAND... [-runs N] [-seconds S] [-phases P,...] ...
//
// The host half runs on the machine that runs the VMMs (in the nested test
// bed: L1). For each run and each case, interleaved, it launches COMMAND — a
// VMM booting a guest whose init runs `guestbench guest` — and serves it on
// a TCP control connection. The guest asks before each workload ("begin
// PHASE"); the host reads KVM's exit counters from debugfs
// (/sys/kernel/debug/kvm: exits, io_exits, mmio_exits, halt_exits, ...),
// answers "go", and reads them again when the guest reports the result. The
// counters are KVM's own, summed over all VMs, so they are the same for
// every VMM; only one VM runs at a time. The host prints a Markdown table of
// medians: each figure for every VMM, the ratio to the baseline VMM, and the
// exits per request.
//
// Workloads in the guest, each for -seconds (the host sends the settings):
//
//	seq-write   1 MiB O_DIRECT writes, sequential over the data disk, then fdatasync
//	seq-read    1 MiB O_DIRECT reads, sequential
//	rand-read   4 KiB O_DIRECT reads at random offsets, -threads at once
//	tcp-tx      guest -> host TCP stream (the host counts what arrives)
//	tcp-rx      host -> guest TCP stream
//
// O_DIRECT bypasses the guest's page cache, so every request reaches the
// device; the host side of the disk is the VMM's business (both are told to
// use the host page cache, see scripts/bench-io.sh).
//
// The guest half is written for govmm's minimal kernel, which has neither
// epoll nor eventfd (CONFIG_EPOLL and CONFIG_EVENTFD are off in tinyconfig).
// Go's network poller needs both and the runtime throws if it cannot start
// it; it starts it on the first os.Open, net.Dial or runtime timer
// (time.Sleep, time.After, and the background scavenger's sleep). So the
// guest half uses the syscall package only, never sleeps on a Go timer
// (syscall.Nanosleep instead), and turns the garbage collector off: no GC
// cycle, no scavenger. Reading the clock (time.Now) is fine.
package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: guestbench guest|host [flags] (see the package comment)")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "guest":
		os.Exit(guestMain(os.Args[2:]))
	case "host":
		os.Exit(hostMain(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "guestbench: unknown mode %q (guest or host)\n", os.Args[1])
		os.Exit(2)
	}
}

// Protocol, one line each way, the guest speaking first:
//
//	guest: hello kernel=K cpus=N disk=BYTES
//	host:  config seconds=S threads=T tx=PORT rx=PORT phases=P1,P2,...
//	guest: begin PHASE            host: go
//	guest: end PHASE ops=N bytes=B ns=D    host: ok
//	...
//	guest: done                   host: bye
//	guest: error TEXT             (and the guest gives up)
var phases = []string{"seq-write", "seq-read", "rand-read", "tcp-tx", "tcp-rx"}

// parsePhases checks a comma-separated list of phases; the empty list
// means all of them. The result keeps the order of phases.
func parsePhases(list string) ([]string, error) {
	if list == "" {
		return phases, nil
	}
	want := map[string]bool{}
	for _, p := range strings.Split(list, ",") {
		if !slices.Contains(phases, p) {
			return nil, fmt.Errorf("unknown phase %q (want some of %s)", p, strings.Join(phases, ","))
		}
		want[p] = true
	}
	var out []string
	for _, p := range phases {
		if want[p] {
			out = append(out, p)
		}
	}
	return out, nil
}

const (
	seqBlock  = 1 << 20 // bytes per sequential request
	randBlock = 4096    // bytes per random read
	netChunk  = 128 << 10
)
