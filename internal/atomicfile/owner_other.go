//go:build !unix

package atomicfile

import "os"

// sameOwner has no owner to carry over here.
func sameOwner(*os.File, os.FileInfo, bool) error { return nil }

// isFresh has no owner to check here.
func isFresh(*os.File) error { return nil }
