package pvpanic

import (
	"testing"
)

// FuzzRegister makes accesses of any width at any offset, reads and
// writes, and checks the register's rules: reads return Supported in the
// register's byte and zeros elsewhere; a write reports exactly the
// supported bits of the register's byte, when there are any.
func FuzzRegister(f *testing.F) {
	f.Add(uint64(0), []byte{1}, true)
	f.Add(uint64(0), []byte{0xFF, 0xFF, 0xFF, 0xFF}, true)
	f.Add(uint64(0), []byte{0, 0}, false)
	f.Add(uint64(1), []byte{1}, true)
	f.Add(^uint64(0), []byte{1, 1}, false)
	f.Fuzz(func(t *testing.T, offset uint64, data []byte, write bool) {
		var got []uint8
		r := NewRegister(func(ev uint8) { got = append(got, ev) })
		if write {
			r.WriteMMIO(offset, data)
			var want []uint8
			if offset == RegEvents && len(data) > 0 && data[0]&Supported != 0 {
				want = []uint8{data[0] & Supported}
			}
			if len(got) != len(want) || len(got) == 1 && got[0] != want[0] {
				t.Fatalf("write %x at %#x: events %v, want %v", data, offset, got, want)
			}
			return
		}
		r.ReadPort(uint16(offset), data)
		for i, b := range data {
			want := byte(0)
			if uint16(offset) == RegEvents && i == 0 {
				want = Supported
			}
			if b != want {
				t.Fatalf("read %d at %#x: byte %d is %#x, want %#x", len(data), uint16(offset), i, b, want)
			}
		}
		if len(got) != 0 {
			t.Fatalf("a read reported %v", got)
		}
	})
}
