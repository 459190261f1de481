package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/govmm/govmm/machine"
)

// maxStatsRows bounds the per-port and per-address tables; the JSON has
// every row.
const maxStatsRows = 20

// writeStatsTable prints s the way kvm_stat prints the kernel's counters,
// but from the VMM's side: exits to userspace by reason, then by device,
// port and MMIO address, with the time govmm spent handling them.
func writeStatsTable(w io.Writer, s machine.Stats) {
	var total uint64
	for _, e := range s.Exits {
		total += e.Count
	}
	fmt.Fprintf(w, "\ngovmm exit statistics: %d exits to userspace in %v", total, coarse(s.Wall))
	if s.Wall > 0 {
		fmt.Fprintf(w, " (%.0f/s)", float64(total)/s.Wall.Seconds())
	}
	fmt.Fprintf(w, "; vCPUs spent %v inside KVM_RUN\n\n", coarse(s.InGuest))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "exit reason\tcount\t%\thandling\tavg\t")
	for _, e := range s.Exits {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%v\t%v\t\n", e.Reason, e.Count, percent(e.Count, total), round(e.Time), avg(e.Time, e.Count))
	}
	tw.Flush()

	if len(s.Devices) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "device\tkind\texits\thandling\tavg")
		for _, d := range s.Devices {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%v\n", d.Device, d.Kind, d.Exits, round(d.Time), avg(d.Time, d.Exits))
		}
		tw.Flush()
	}
	accessTable(w, "port", "0x%04x", s.Ports)
	accessTable(w, "MMIO address", "%#x", s.MMIO)
}

func accessTable(w io.Writer, what, addrFormat string, rows []machine.AccessStats) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tdevice\treads\twrites\thandling\n", what)
	for i, r := range rows {
		if i == maxStatsRows {
			fmt.Fprintf(tw, "(%d more)\t\t\t\t\n", len(rows)-maxStatsRows)
			break
		}
		fmt.Fprintf(tw, addrFormat+"\t%s\t%d\t%d\t%v\n", r.Addr, r.Device, r.Reads, r.Writes, round(r.Time))
	}
	tw.Flush()
}

func percent(n, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}

// coarse rounds d to milliseconds, or to microseconds below one.
func coarse(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

func round(d time.Duration) time.Duration { return d.Round(time.Microsecond) }

func avg(d time.Duration, n uint64) time.Duration {
	if n == 0 {
		return 0
	}
	return (d / time.Duration(n)).Round(10 * time.Nanosecond)
}

// writeStatsJSON writes s to path as JSON, durations in nanoseconds.
func writeStatsJSON(path string, s machine.Stats) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--stats-json: %w", err)
	}
	return nil
}
