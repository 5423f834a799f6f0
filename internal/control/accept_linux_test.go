package control

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An accept that fails for want of a file descriptor (EMFILE: the proxy's
// connections took them all for a moment) is retried, as the client
// listeners' accept loops and net/http's retry it: the control socket must
// not stop answering for the rest of the process's life, leaving `edged
// reload` (systemctl reload), promote and rollback without an answer
// until a restart. The test leaves the process one descriptor free, which
// the client's connection takes, so that the server's accept of it fails;
// then gives the descriptors back.
func TestAcceptOutOfDescriptorsIsRetried(t *testing.T) {
	path := Path(t.TempDir())
	srv, err := Listen(context.Background(), path, func(context.Context, Request) (any, error) { return "ok", nil }, nil)
	require.NoError(t, err)
	defer srv.Close()
	require.NoError(t, Call(path, "reload", 5*time.Second, nil), "answers before")

	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	// Every descriptor up to the highest in use is taken, by /dev/null
	// where there is a hole, so that the lowest free one is known.
	highest := 0
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			highest = max(highest, n)
		}
	}
	var fill []*os.File
	defer func() {
		for _, f := range fill {
			f.Close()
		}
	}()
	for range 10000 {
		f, err := os.Open(os.DevNull)
		require.NoError(t, err)
		fill = append(fill, f)
		if int(f.Fd()) > highest {
			break
		}
	}
	free := int(fill[len(fill)-1].Fd()) + 1 // the one descriptor left
	low := lim
	low.Cur = uint64(free + 1)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	restored := false
	restore := func() {
		if !restored {
			restored = true
			require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
		}
	}
	defer restore()

	answer := make(chan error, 1)
	go func() { answer <- Call(path, "reload", 10*time.Second, nil) }()
	// The client connects with the last descriptor; the server's accept
	// of it finds none left (EMFILE), and the connection stays in the
	// listen queue.
	time.Sleep(500 * time.Millisecond)
	restore()
	assert.NoError(t, <-answer, "the connection accepted once descriptors are back")
	assert.NoError(t, Call(path, "reload", 5*time.Second, nil), "and later ones")
}
