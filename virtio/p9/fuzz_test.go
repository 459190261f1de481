package p9

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzDir is where FuzzMessage makes its shares ("": the default
// temporary directory).
var fuzzDir string

// FuzzMessage feeds the server random T-messages against a fresh share,
// after a prefix that negotiates a session and opens a few fids (0: the
// root, 1: a file open read-write, 2: a directory open for reading, 3: a
// symlink out of the share), so that the fuzzer's messages reach the
// handlers' work and not only their fid checks. The input's first byte
// picks the reply buffer's size; the rest is a stream of messages, each
// as long as its size field says (cut to what is left). The server must
// never panic, every reply must be framed correctly, and nothing outside
// the share may change.
func FuzzMessage(f *testing.F) {
	fuzzDir = ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		fuzzDir = "/dev/shm"
	}
	seed := func(msgs ...[]byte) []byte {
		b := []byte{0xFF}
		for _, m := range msgs {
			b = append(b, m...)
		}
		return b
	}
	f.Add(seed(tmsg(Twalk, 1, uint32(0), uint32(5), []string{"..", "..", "outside"})))
	f.Add(seed(tmsg(Twalk, 1, uint32(0), uint32(5), []string{"up"}), tmsg(Tlopen, 2, uint32(5), uint32(0))))
	f.Add(seed(tmsg(Twalk, 1, uint32(3), uint32(5), []string{"secret"}), tmsg(Tlopen, 2, uint32(3), uint32(2))))
	f.Add(seed(tmsg(Tlcreate, 1, uint32(0), "rel", uint32(P9_DOTL_WRONLY), uint32(0o644), uint32(0))))
	f.Add(seed(tmsg(Twalk, 1, uint32(0), uint32(5), []string{}),
		tmsg(Tlcreate, 2, uint32(5), "new", uint32(P9_DOTL_RDWR), uint32(0o644), uint32(0)),
		tmsg(Twrite, 3, uint32(5), uint64(0), uint32(5), raw("hello")),
		tmsg(Tread, 4, uint32(5), uint64(0), uint32(100)),
		tmsg(Tsetattr, 5, uint32(5), uint32(P9_ATTR_SIZE|P9_ATTR_MODE), uint32(0o600), uint32(0), uint32(0), uint64(2), uint64(0), uint64(0), uint64(0), uint64(0))))
	f.Add(seed(tmsg(Tmkdir, 1, uint32(2), "d", uint32(0o755), uint32(0)),
		tmsg(Tsymlink, 2, uint32(0), "s", "../outside/secret", uint32(0)),
		tmsg(Trenameat, 3, uint32(0), "s", uint32(2), "t"),
		tmsg(Tunlinkat, 4, uint32(0), "file", uint32(0)),
		tmsg(Tlink, 5, uint32(0), uint32(3), "hard")))
	f.Add(seed(tmsg(Treaddir, 1, uint32(2), uint64(0), uint32(300)), tmsg(Treaddir, 2, uint32(2), uint64(1), uint32(300))))
	f.Add(seed(tmsg(Trename, 1, uint32(1), uint32(0), "moved"), tmsg(Tremove, 2, uint32(1)), tmsg(Tclunk, 3, uint32(2))))
	f.Add(seed(tmsg(Tsetattr, 1, uint32(3), uint32(0xFFFF), uint32(0o777), uint32(0), uint32(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0))))
	f.Add(seed(tmsg(Tversion, NOTAG, uint32(4096), Version), tmsg(Tattach, 1, uint32(0), uint32(NOFID), "", "", uint32(0))))
	f.Add(seed(tmsg(Tmknod, 1, uint32(0), "p", uint32(0o10644), uint32(0), uint32(0), uint32(0)), tmsg(Tstatfs, 2, uint32(0)), tmsg(Tfsync, 3, uint32(1), uint32(1))))
	f.Add([]byte{3, 1, 2, 3, 4, 5, 6, 7, 8, 9})

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		respSize := rlerrorSize - 1 + int(data[0])*64
		data = data[1:]

		// On tmpfs if there is one: the fuzzer's fsyncs and
		// metadata changes are then cheap.
		base, err := os.MkdirTemp(fuzzDir, "p9fuzz")
		require.NoError(t, err)
		t.Cleanup(func() { os.RemoveAll(base) })
		sh := newShareIn(t, base)
		require.NoError(t, os.WriteFile(sh.path("file"), []byte("0123456789"), 0o644))
		require.NoError(t, os.Mkdir(sh.path("dir"), 0o755))
		require.NoError(t, os.WriteFile(sh.path("dir/inner"), []byte("inner"), 0o644))
		require.NoError(t, os.Symlink("..", sh.path("up")))
		require.NoError(t, os.Symlink("../outside", sh.path("rel")))
		require.NoError(t, os.Symlink(filepath.Join(sh.outside, "secret"), sh.path("abs")))
		s := sh.start(t, false)
		c := session(t, s)
		c.mustWalk(0, 1, "file")
		require.NoError(t, c.lopen(1, P9_DOTL_RDWR))
		c.mustWalk(0, 2, "dir")
		require.NoError(t, c.lopen(2, P9_DOTL_RDONLY))
		c.mustWalk(0, 3, "rel")

		resp := make([]byte, respSize)
		for msgs := 0; len(data) >= headerSize && msgs < 64; msgs++ {
			size := int(binary.LittleEndian.Uint32(data))
			n := min(max(size, headerSize), len(data))
			msg := data[:n]
			data = data[n:]
			r := s.Handle(msg, resp)
			if r == 0 {
				continue
			}
			require.GreaterOrEqual(t, r, headerSize)
			require.LessOrEqual(t, r, respSize)
			require.EqualValues(t, r, binary.LittleEndian.Uint32(resp))
			require.Equal(t, msg[5:7], resp[5:7], "tag")
			require.True(t, resp[4] == msg[4]+1 || resp[4] == Rlerror, "reply type %d to %d", resp[4], msg[4])
			require.LessOrEqual(t, uint32(r), max(s.Msize(), rlerrorSize))
		}
		sh.checkOutside(t)
	})
}
