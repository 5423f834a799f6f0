//go:build !unix

package history

import (
	"os"
	"path/filepath"
)

// OpenNoForeignLink opens rel below dir for reading unless ForeignLink
// refuses the way; without openat here the check is made by name before
// the open (see the unix version).
func OpenNoForeignLink(dir, rel string) (*os.File, error) {
	if err := ForeignLink(dir, rel); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(dir, rel))
}
