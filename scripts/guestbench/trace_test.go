package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A made-up trace in perf script's format: the VMM is process 100, its vCPU
// thread 101 and another thread 102; the benchmark's host half is 300.
const fakeTrace = `
           govmm   100/101   [000]    10.000100:                          kvm:kvm_entry: vcpu 0, rip 0xffffffff8119b82b
           govmm   100/102   [001]    10.000200:                    kvm:kvm_msi_set_irq: dst 0 vec 40 (Fixed|physical|edge)
           govmm   100/101   [000]    10.000210:                           kvm:kvm_exit: vcpu 0 reason interrupt rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0
           govmm   100/101   [000]    10.000220:                       kvm:kvm_inj_virq: IRQ 0x28
           govmm   100/101   [000]    10.000230:                          kvm:kvm_entry: vcpu 0, rip 0x1
      guestbench   300/301   [001]    10.000300:                     sched:sched_waking: comm=guestbench pid=305 prio=120 target_cpu=000
           govmm   100/101   [000]    10.000310:                           kvm:kvm_exit: vcpu 0 reason interrupt rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0
           govmm   100/101   [000]    10.000320:                     sched:sched_switch: prev_comm=govmm prev_pid=101 prev_prio=120 prev_state=R+ ==> next_comm=guestbench next_pid=305 next_prio=120
      guestbench   300/305   [000]    10.000400:                     sched:sched_switch: prev_comm=guestbench prev_pid=305 prev_prio=120 prev_state=S ==> next_comm=govmm next_pid=101 next_prio=120
           govmm   100/101   [000]    10.000410:                          kvm:kvm_entry: vcpu 0, rip 0x1
           govmm   100/101   [000]    10.000500:                           kvm:kvm_exit: vcpu 0 reason interrupt rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0
           govmm   100/101   [000]    10.000505:          irq_vectors:local_timer_entry: vector=236
           govmm   100/101   [000]    10.000506:             timer:hrtimer_expire_entry: hrtimer=0xff2f function=0xffffffff9e968830 now=15724145040
           govmm   100/101   [000]    10.000510:                          kvm:kvm_entry: vcpu 0, rip 0x1
           govmm   100/101   [000]    10.000600:                           kvm:kvm_exit: vcpu 0 reason interrupt rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0
           govmm   100/101   [000]    10.000610:                          kvm:kvm_entry: vcpu 0, rip 0x1
           govmm   100/101   [000]    10.000700:                           kvm:kvm_exit: vcpu 0 reason io rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0
           govmm   100/101   [000]    10.000710:                          kvm:kvm_entry: vcpu 0, rip 0x1
           govmm   100/101   [000]    10.000800:                           kvm:kvm_exit: vcpu 0 reason hlt rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0
           govmm   100/101   [000]    10.000810:                     sched:sched_switch: prev_comm=govmm prev_pid=101 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
           govmm   100/102   [001]    10.000900:                     sched:sched_waking: comm=govmm pid=101 prio=120 target_cpu=000
    kworker/0:1-eve    20/20     [001]    10.000950:                     sched:sched_waking: comm=govmm pid=102 prio=120 target_cpu=000
not a perf line at all
`

func TestAnalyzeTrace(t *testing.T) {
	rep, err := analyzeTrace(strings.NewReader(fakeTrace), 100)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"interrupt": 4, "io": 1, "hlt": 1}, rep.exits)
	require.Equal(t, map[string]int{causeInject: 1, causePreempt: 1, causeTimer: 1, causeNone: 1}, rep.irqExits)
	require.Equal(t, 1, rep.msis)
	// Preempted once, by the benchmark; the halt is a sleep, not counted.
	require.Equal(t, map[string]int{"guestbench": 1}, rep.preemptedBy)
	// The waking at 10.000300 came from CPU 1 while the vCPU was in guest
	// mode on CPU 0; those at 10.0009 found it halted.
	require.Equal(t, 1, rep.wakeupsIntoGuest)

	out := rep.format("tcp-tx", 2)
	for _, want := range []string{
		"trace tcp-tx, per request (2 requests, 22 events)",
		"exits 3.00: 2.00 interrupt, 0.50 hlt, 0.50 io",
		"0.50 a host timer, 0.50 an interrupt to inject, 0.50 nothing traced, 0.50 the vCPU thread preempted",
		"MSIs delivered 0.50; wakeups aimed at a CPU running the guest 0.50",
		"vCPU thread preempted by: 0.50 guestbench",
	} {
		require.Contains(t, out, want)
	}
}

func TestAnalyzeTraceOtherProcess(t *testing.T) {
	_, err := analyzeTrace(strings.NewReader(fakeTrace), 999)
	require.ErrorContains(t, err, "no guest exits of process 999")
}

func TestTraceReportOthers(t *testing.T) {
	rep := &traceReport{
		exits:       map[string]int{"hlt": 1},
		irqExits:    map[string]int{},
		preemptedBy: map[string]int{"a": 4, "b": 3, "c": 2, "d": 1, "e": 1},
	}
	out := rep.format("tcp-rx", 1)
	require.Contains(t, out, "interrupt exits, by what came before the next entry: none")
	require.Contains(t, out, "vCPU thread preempted by: 4.00 a, 3.00 b, 2.00 c, 2.00 others")
}

func TestTraceWindow(t *testing.T) {
	delay, length := traceWindow(10 * time.Second)
	require.Equal(t, 4*time.Second, length)
	require.Equal(t, 3*time.Second, delay)
	delay, length = traceWindow(4 * time.Second)
	require.Equal(t, 2*time.Second, length)
	require.Equal(t, time.Second, delay)
}
