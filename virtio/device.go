package virtio

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/machine/memory"
)

// Device is one virtio device type's logic (§5), apart from the transport
// that presents it to the guest (virtio over PCI, §4.1, in
// virtio/virtiopci; virtio over MMIO, §4.2, in virtio/virtiommio). The transport owns feature negotiation, the status
// state machine, the queue registers and interrupts; the device owns its
// configuration layout and what it does with the buffers the driver hands
// it.
//
// The transport calls ReadConfig, WriteConfig, Activate and Reset from vCPU
// goroutines, one call at a time.
type Device interface {
	// DeviceID is the virtio device ID (§5), e.g. VIRTIO_ID_BLOCK.
	DeviceID() uint16
	// Features returns the device-type feature bits the device offers
	// (bits 0-23 and 50-127, §6). The transport adds the ones it
	// implements for every device: VIRTIO_F_VERSION_1,
	// VIRTIO_F_INDIRECT_DESC and VIRTIO_F_EVENT_IDX.
	Features() Features
	// QueueMaxSizes returns, for each virtqueue in order, its maximum
	// size, a power of 2 (§2.7); its length is the number of queues.
	QueueMaxSizes() []uint16
	// ReadConfig fills data from the device-specific configuration space
	// at offset (§4.1.4.6); WriteConfig stores into it. Both must accept
	// any offset and length from a hostile guest: bytes past the end of
	// the structure read as zero and ignore writes.
	ReadConfig(offset uint64, data []byte)
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device when the driver sets DRIVER_OK
	// (§3.1.1): from then on the device serves its queues, normally on
	// goroutines of its own. It must not block. An error makes the
	// transport set DEVICE_NEEDS_RESET.
	Activate(a *Activation) error
	// Reset stops the device (§2.4): it returns once no goroutine of the
	// device touches guest memory or the queues any more, leaving the
	// device as before Activate. It is called on a driver reset and
	// when the machine shuts down, also if Activate never ran.
	Reset()
}

// QueueInterruptSharer is an optional interface of a Device whose queues
// are best served by a single interrupt. A transport that gives each queue
// a vector of its own by default (virtio over PCI with MSI-X) then offers
// the driver one vector for all the queues instead, and each interrupt
// makes the driver look at every queue (§4.1.5.1.2: the driver maps
// events to vectors, and may map several to one).
//
// It suits a device whose queues finish work together, so that the
// interrupt one queue sends finds work on the others too: virtio-net's
// transmit completions and the replies to them that arrive on its receive
// queue. It does not suit one whose queues run in parallel on different
// CPUs, such as a multi-queue disk, where each queue's vector follows the
// CPU that uses it.
type QueueInterruptSharer interface {
	// ShareQueueInterrupt reports whether the queues should share one
	// interrupt.
	ShareQueueInterrupt() bool
}

// Activation is what a device gets when the driver sets DRIVER_OK.
//
// Its callbacks (ConfigChanged, Fail and each Queue's Interrupt) are safe
// from any goroutine and never wait for the transport's register lock: a
// transport calls Device.Reset with that lock held, and Reset waits for the
// device's goroutines, which may be inside a callback at that moment. Once
// Reset has returned, the callbacks of the activation it ended do nothing.
type Activation struct {
	// Mem is guest RAM, which all buffer addresses refer to.
	Mem *memory.Guest
	// Features are the negotiated features (§2.2).
	Features Features
	// Queues has one entry per queue of QueueMaxSizes, in order; the
	// entry of a queue the driver did not enable is nil.
	Queues []*Queue
	// ConfigChanged sends a configuration change notification (§2.1.2,
	// §4.1.5.3) after the device changed its configuration space.
	ConfigChanged func()
	// Fail reports an error the device cannot recover from, usually a
	// broken queue (an error from Pop): the transport logs it, sets
	// DEVICE_NEEDS_RESET and notifies the driver (§2.1.2). The device
	// stops using its queues until Reset.
	Fail func(error)
	// Log is for the device's diagnostics.
	Log *slog.Logger
}

// Queue is an enabled virtqueue together with its two notifications.
type Queue struct {
	Index int
	*Virtqueue
	// Kick is signalled on each available buffer notification (§2.7.10):
	// by KVM, through an ioeventfd on the notify register, or by the
	// transport when a notify write reaches userspace. Devices also
	// signal it themselves to wake the queue's worker, as Stop does.
	Kick *eventfd.EventFD
	// Interrupt sends the driver a used buffer notification for this
	// queue (§2.7.7), on the MSI-X vector the driver chose or INTx. Call
	// it when Publish or Push says so. Safe from any goroutine.
	Interrupt func()
	// InterruptLine, if not nil, says where Interrupt sends the
	// notification at the moment: queues whose lines are equal reach
	// the driver through the same interrupt, so a notification sent for
	// one of them makes the driver look at all of them. The line is an
	// MSI-X vector, which the driver may map to several queues
	// (§4.1.5.1.2) and whose handler then checks each of them (Linux's
	// vp_vring_interrupt), or INTx#, after which the driver reads the ISR
	// status, whose one queue bit stands for every queue (§4.1.4.5).
	// Safe from any goroutine.
	InterruptLine func() uint32
}

// SharesInterrupt reports whether an interrupt sent for q now also tells
// the driver about o's used buffers, because both go to the same line
// (see InterruptLine). It is false if either transport cannot tell.
func (q *Queue) SharesInterrupt(o *Queue) bool {
	if q == nil || o == nil || q.InterruptLine == nil || o.InterruptLine == nil {
		return false
	}
	return q.InterruptLine() == o.InterruptLine()
}

// ServeFunc serves one descriptor chain: it reads the request from c's
// device-readable buffers, writes the reply to its device-writable ones,
// and returns the number of bytes written, for the used ring. An error
// means the driver broke the protocol badly enough that the device must
// stop (a malformed request is normally answered with an error status
// instead).
type ServeFunc func(c *DescChain) (written uint32, err error)

// Drain serves every chain in q's available ring, then re-enables
// notifications and repeats while the driver has added more. It returns
// when the ring is empty with notifications enabled, so the caller can
// wait for the next Kick; an error breaks the queue (see Activation.Fail).
//
// Each completion is published (used->idx stored) as soon as its chain is
// served. A driver that adds chains while the device works sees the
// earlier ones come back without waiting for an interrupt: Linux's
// virtio-net, for one, reclaims finished transmit buffers each time it
// queues a packet (free_old_xmit_skbs in start_xmit), and its TCP stack
// stops sending while too many bytes sit unreclaimed in the device (TCP
// small queues). A publish is one store of the used index, cheap next to
// serving a chain.
//
// When the interrupt goes depends on how the driver suppresses them
// (§2.7.7.2):
//   - With VIRTIO_F_EVENT_IDX the driver names the one completion it
//     wants an interrupt for (used_event), so the interrupt goes at once,
//     in the middle of a batch if need be. Holding it to the end of the
//     batch only kept a driver waiting (halted, often) while the device
//     served chains the driver had queued behind it. The driver asks
//     again only after it has handled the interrupt, so this costs at most
//     one interrupt per round trip; Linux's transmit path asks for one
//     when three quarters of the outstanding packets are done
//     (virtqueue_enable_cb_delayed).
//   - With the flags the driver can only switch interrupts on or off, and
//     an interrupt per chain would be the device's choice, not the
//     driver's: the batch ends with a single interrupt.
func Drain(q *Queue, c *DescChain, serve ServeFunc) error {
	return DrainNotifying(q, c, serve, nil)
}

// DrainNotifying is Drain with the device's own used buffer notification:
// it calls notify, on the worker's goroutine, wherever Drain would call
// q.Interrupt. notify must send q's notification; a device with others
// waiting can send them right after it, while the vCPU stops for it
// anyway, or let it stand for them where one interrupt covers both
// (virtio-net's receive interrupt, see its rxHold).
func DrainNotifying(q *Queue, c *DescChain, serve ServeFunc, notify func()) error {
	interrupt := q.Interrupt
	if notify != nil {
		interrupt = notify
	}
	eager := q.EventIdx()
	for {
		q.DisableNotifications()
		notify := false
		for {
			ok, err := q.Pop(c)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			n, err := serve(c)
			if err != nil {
				return err
			}
			need, err := q.Push(c.Head, n)
			if err != nil {
				return err
			}
			switch {
			case need && eager:
				interrupt()
			case need:
				notify = true
			}
		}
		if notify {
			interrupt()
		}
		more, err := q.EnableNotifications()
		if err != nil || !more {
			return err
		}
	}
}

// Worker is a goroutine that runs a function each time a queue is kicked,
// until stopped: the loop behind most virtqueues.
type Worker struct {
	kick *eventfd.EventFD
	stop atomic.Bool
	done chan struct{}
}

// StartWorker starts a goroutine that calls work once at once (buffers
// may have been added before the device was activated) and then after
// every Kick of q. If work returns an error the worker reports it with
// fail and exits.
func StartWorker(q *Queue, work func() error, fail func(error)) *Worker {
	w := &Worker{kick: q.Kick, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for !w.stop.Load() {
			if err := work(); err != nil {
				if !w.stop.Load() {
					fail(err)
				}
				return
			}
			if _, err := w.kick.Wait(); err != nil {
				if !errors.Is(err, os.ErrClosed) {
					fail(err)
				}
				return
			}
		}
	}()
	return w
}

// Stop asks the worker to exit, wakes it, and waits until it has. It may
// be called more than once and on a nil Worker.
func (w *Worker) Stop() {
	if w == nil {
		return
	}
	w.stop.Store(true)
	_ = w.kick.Signal()
	<-w.done
}

// WorkerGroup stops several workers together.
type WorkerGroup struct {
	mu      sync.Mutex
	workers []*Worker
}

// Add records w.
func (g *WorkerGroup) Add(w *Worker) {
	g.mu.Lock()
	g.workers = append(g.workers, w)
	g.mu.Unlock()
}

// Stop stops every recorded worker and forgets them.
func (g *WorkerGroup) Stop() {
	g.mu.Lock()
	ws := g.workers
	g.workers = nil
	g.mu.Unlock()
	for _, w := range ws {
		w.Stop()
	}
}
