package history

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"edged/internal/owner"
)

// CheckStateDir refuses a state directory that another local user could
// change: state_dir holds the history (what `edged rollback` restores),
// the audit logs and the control socket, so a state_dir, or a directory or
// the audit log below it, writable by group or others would let them swap
// what edged restores or records, or put their own socket in its place.
// What does not exist yet is fine: edged creates it 0750.
func CheckStateDir(stateDir string) error {
	return checkStateDirParts(stateDir, func(what, p string, fi fs.FileInfo) error {
		if perm := fi.Mode().Perm(); perm&0o022 != 0 {
			return fmt.Errorf("%s is writable by group or others (mode %04o); run: chmod go-w %s", what, perm, p)
		}
		return nil
	})
}

// checkStateDirParts calls check on state_dir and each of the parts of
// it CheckStateDir and CheckStateDirOwner look at that exist, with what
// names it in an error, until one fails.
func checkStateDirParts(stateDir string, check func(what, p string, fi fs.FileInfo) error) error {
	for _, p := range stateDirParts(stateDir) {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("state_dir %s: %w", stateDir, err)
		}
		what := "state_dir " + stateDir
		if p != stateDir {
			what = fmt.Sprintf("state_dir %s: %s", stateDir, p)
		}
		if err := check(what, p, fi); err != nil {
			return err
		}
	}
	return nil
}

// stateDirParts are state_dir and what CheckStateDir and
// CheckStateDirOwner look at in it.
func stateDirParts(stateDir string) []string {
	return []string{
		stateDir,
		filepath.Join(stateDir, "history"),
		filepath.Join(stateDir, "history", "blobs"),
		filepath.Join(stateDir, "audit.log"),
		filepath.Join(stateDir, "audit"), // the environments' audit logs (rules.audit_log)
	}
}

// CheckStateDirOwner refuses a state directory, or a part of it that
// CheckStateDir looks at, owned by another user than uid (the user edged
// runs as) and root: whatever its mode, its owner may replace what edged
// rollback restores and the control socket edged reload asks (a
// state_dir made 0755 by whoever created it first, under a directory
// others may write to). As ssh's StrictModes, root's is fine. What does
// not exist yet is fine: edged creates it.
func CheckStateDirOwner(stateDir string, uid int) error {
	return checkStateDirParts(stateDir, func(what, _ string, fi fs.FileInfo) error {
		o, _, ok := owner.IDs(fi)
		if !ok || o == 0 || int64(o) == int64(uid) {
			return nil
		}
		return fmt.Errorf("%s is owned by %s, not by the user edged runs as (%s) or root: that user could change what edged rollback restores; run: chown -R %s %s",
			what, owner.User(o), owner.User(uint32(uid)), owner.User(uint32(uid)), stateDir)
	})
}
