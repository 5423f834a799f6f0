// Package fdshortage lets a test run its process out of file
// descriptors, as a burst of connections would: a dial, an accept or an
// open then fails with EMFILE. It is imported by tests only (edge,
// upstream).
package fdshortage

import (
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// Shortage holds every file descriptor the process may still open,
// under a soft limit lowered for the test.
type Shortage struct {
	t     testing.TB
	orig  syscall.Rlimit
	files []*os.File
	done  bool
}

// Exhaust lowers the process's soft limit on open files to at most 512
// and takes every descriptor left under it; Release (also run at the
// test's end) gives them back, and the limit.
func Exhaust(t testing.TB) *Shortage {
	t.Helper()
	s := &Shortage{t: t}
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &s.orig))
	low := s.orig
	low.Cur = min(s.orig.Cur, 512)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	t.Cleanup(s.Release)
	s.Take()
	return s
}

// Take opens files until the process has none left: those a connection
// closed meanwhile gave back too.
func (s *Shortage) Take() {
	s.t.Helper()
	for range 1024 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			require.ErrorIs(s.t, err, syscall.EMFILE)
			return
		}
		s.files = append(s.files, f)
	}
	s.t.Fatal("no EMFILE under the lowered limit")
}

// Release closes the files taken and puts the limit back; once.
func (s *Shortage) Release() {
	if s.done {
		return
	}
	s.done = true
	for _, f := range s.files {
		f.Close()
	}
	require.NoError(s.t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &s.orig))
}
