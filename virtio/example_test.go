package virtio_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
)

// A device that upper-cases what the driver sends, draining its queue the
// way the package documentation describes.
func Example() {
	mem, _ := virtiotest.NewRAM(0, 1<<20)
	features := virtio.Features(0).With(virtio.VIRTIO_F_VERSION_1).With(virtio.VIRTIO_F_EVENT_IDX)
	cfg, end := virtiotest.Layout(0, 8, features)
	driver := virtiotest.NewDriver(mem, cfg, memory.Range{Start: end, Size: 1<<20 - end})

	// The transport enables the queue when the driver writes queue_enable.
	var q virtio.Virtqueue
	if err := q.Enable(mem, cfg); err != nil {
		fmt.Println("DEVICE_NEEDS_RESET:", err)
		return
	}

	// The guest's driver makes two requests available and notifies.
	for _, s := range []string{"hello", "virtio"} {
		driver.AddChain(driver.Readable([]byte(s)), driver.Writable(16))
	}
	driver.Publish()

	// The device's worker, on the notification.
	var c virtio.DescChain
	for {
		q.DisableNotifications()
		for {
			ok, err := q.Pop(&c)
			if err != nil {
				fmt.Println("DEVICE_NEEDS_RESET:", err)
				return
			}
			if !ok {
				break
			}
			in, _ := io.ReadAll(&c)
			_, _ = c.Write([]byte(strings.ToUpper(string(in))))
			if err := q.AddUsed(c.Head, c.Written()); err != nil {
				fmt.Println(err)
				return
			}
		}
		if q.Publish() {
			fmt.Println("interrupt")
		}
		more, err := q.EnableNotifications()
		if err != nil || !more {
			break
		}
	}

	// The driver takes the used buffers back.
	for {
		id, n, ok := driver.GetUsed()
		if !ok {
			break
		}
		out := driver.Desc(driver.Desc(uint16(id)).Next)
		fmt.Printf("head %d: %q\n", id, driver.ReadMem(out.Addr, uint64(n)))
	}
	// Output:
	// interrupt
	// head 0: "HELLO"
	// head 2: "VIRTIO"
}
