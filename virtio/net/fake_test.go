package net

import (
	"fmt"
	"sync"

	"github.com/govmm/govmm/virtio"
)

// fakeBackend is a Backend in memory: packets queued with push are read by
// the device, packets the device writes are kept.
type fakeBackend struct {
	mu         sync.Mutex
	queue      [][]byte // packets to read, header first
	generate   []byte   // if set, ReadPacket returns copies of it forever
	written    [][]byte // packets written, header first
	discard    bool     // count written packets, do not keep them
	readCalls  int
	writeCalls int
	starts     []virtio.Features
	stopped    bool
	vanished   bool
	writeErr   error // returned by WritePacket if set
	// onWrite, if set, runs at the start of each WritePacket, on the
	// transmit worker, with the call's number (from 1).
	onWrite func(n int)
	closed  bool
	wake    chan struct{}
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{wake: make(chan struct{}, 1)}
}

func (b *fakeBackend) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// push queues packets for the device to read.
func (b *fakeBackend) push(pkts ...[]byte) {
	b.mu.Lock()
	b.queue = append(b.queue, pkts...)
	b.mu.Unlock()
	b.signal()
}

// vanish makes the backend behave like a deleted tap.
func (b *fakeBackend) vanish() {
	b.mu.Lock()
	b.vanished = true
	b.mu.Unlock()
	b.signal()
}

func (b *fakeBackend) vanishedError() error {
	return fmt.Errorf("tap fake0: %w", ErrVanished)
}

func (b *fakeBackend) Start(f virtio.Features) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.starts = append(b.starts, f)
	b.stopped = false
	if b.vanished {
		return b.vanishedError()
	}
	return nil
}

func (b *fakeBackend) Stop() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	b.signal()
}

func (b *fakeBackend) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) ReadPacket(bufs [][]byte, idle func()) (int, error) {
	b.mu.Lock()
	b.readCalls++
	for {
		switch {
		case b.stopped:
			b.mu.Unlock()
			return 0, ErrStopped
		case b.vanished:
			b.mu.Unlock()
			return 0, b.vanishedError()
		case b.generate != nil:
			p := b.generate
			b.mu.Unlock()
			scatter(bufs, p)
			return len(p), nil
		case len(b.queue) > 0:
			p := b.queue[0]
			b.queue = b.queue[1:]
			b.mu.Unlock()
			// Like a tap: copy what fits, return the whole length.
			scatter(bufs, p)
			return len(p), nil
		}
		b.mu.Unlock()
		if idle != nil {
			idle()
		}
		<-b.wake
		b.mu.Lock()
	}
}

func (b *fakeBackend) WritePacket(bufs [][]byte) error {
	b.mu.Lock()
	b.writeCalls++
	if hook := b.onWrite; hook != nil {
		n := b.writeCalls
		b.mu.Unlock()
		hook(n)
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	switch {
	case b.stopped:
		return ErrStopped
	case b.vanished:
		return b.vanishedError()
	case b.writeErr != nil:
		return b.writeErr
	case b.discard:
		return nil
	}
	var p []byte
	for _, buf := range bufs {
		p = append(p, buf...)
	}
	b.written = append(b.written, p)
	return nil
}

// setOnWrite sets the hook WritePacket runs.
func (b *fakeBackend) setOnWrite(hook func(n int)) {
	b.mu.Lock()
	b.onWrite = hook
	b.mu.Unlock()
}

// packets returns a copy of the written packets.
func (b *fakeBackend) packets() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.written...)
}

func (b *fakeBackend) reads() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readCalls
}

func (b *fakeBackend) writes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.writeCalls
}

func (b *fakeBackend) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// scatter copies p into bufs in order, as far as they go.
func scatter(bufs [][]byte, p []byte) {
	for _, buf := range bufs {
		if len(p) == 0 {
			return
		}
		p = p[copy(buf, p):]
	}
}
