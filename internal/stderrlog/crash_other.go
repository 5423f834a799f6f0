//go:build !linux

package stderrlog

import (
	"errors"
	"os"
)

// JournalSocket is where journald takes log streams: Linux only.
var JournalSocket = ""

// CrashesToJournal: there is no journal here.
func CrashesToJournal(string) (*os.File, error) {
	return nil, errors.New("journal stream: not on this system")
}
