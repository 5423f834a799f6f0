//go:build !unix

package stderrlog

import "os"

// devIno: there is no journal here.
func devIno(*os.File) (dev, ino uint64, ok bool) { return 0, 0, false }
