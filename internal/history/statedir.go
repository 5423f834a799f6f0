package history

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CheckStateDir refuses a state directory that another local user could
// change: state_dir holds the history (what `edged rollback` restores),
// the audit logs and the control socket, so a state_dir, or a directory or
// the audit log below it, writable by group or others would let them swap
// what edged restores or records, or put their own socket in its place.
// What does not exist yet is fine: edged creates it 0750.
func CheckStateDir(stateDir string) error {
	for _, p := range []string{
		stateDir,
		filepath.Join(stateDir, "history"),
		filepath.Join(stateDir, "history", "blobs"),
		filepath.Join(stateDir, "audit.log"),
		filepath.Join(stateDir, "audit"), // the environments' audit logs (rules.audit_log)
	} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("state_dir %s: %w", stateDir, err)
		}
		if perm := fi.Mode().Perm(); perm&0o022 != 0 {
			what := "state_dir " + stateDir
			if p != stateDir {
				what = fmt.Sprintf("state_dir %s: %s", stateDir, p)
			}
			return fmt.Errorf("%s is writable by group or others (mode %04o); run: chmod go-w %s", what, perm, p)
		}
	}
	return nil
}
