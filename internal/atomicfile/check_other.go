//go:build !unix

package atomicfile

// CanReplace checks only what IsFileOrNothing does where files have no
// Unix owner: see check_unix.go.
func CanReplace(path string) error { return IsFileOrNothing(path) }

// CanRenameIn checks nothing here: see check_unix.go.
func CanRenameIn(dir string) error { return nil }
