//go:build !unix

package atomicfile

import "os"

// OpenDir opens the directory d.
func OpenDir(d string) (*os.File, error) { return os.Open(d) }
