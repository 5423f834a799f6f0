package edge

import (
	"fmt"
	"path/filepath"
	"strings"

	"edged/internal/realpath"
)

// stateOwn are the names in state_dir that edged keeps itself: the
// history (what edged rollback restores), its audit log, the
// environments' audit logs (AuditLogPath), the control socket and the
// lock that keeps one edged per state_dir.
var stateOwn = map[string]bool{"history": true, "audit.log": true, "audit": true, "edged.sock": true, "edged.lock": true}

// StateFileProblem says why an access log may not be written at path, a
// file edged keeps in stateDir (straight, or through symlinks, however
// many: a link an environment's operators put in its home), or "". An
// environment's operators set its access log's path, and state_dir is
// edged's alone: an access log there would append a line per request,
// what clients send, to the trail of who changed what, to another
// environment's audit log, or to a generation's record in the history.
func StateFileProblem(path, stateDir string) string {
	if path == "" || stateDir == "" {
		return ""
	}
	return stateFileProblem(path, realpath.ForCreate(path), stateDir)
}

// stateFileProblem is StateFileProblem's verdict on path, which leads to
// real.
func stateFileProblem(path, real, stateDir string) string {
	state := realpath.ForCreate(stateDir)
	rel, err := filepath.Rel(state, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return ""
	}
	first, _, _ := strings.Cut(rel, string(filepath.Separator))
	// A dot-name: state_dir itself, or the control socket's temporary
	// directory (control.Listen).
	if !stateOwn[first] && !strings.HasPrefix(first, ".") {
		return ""
	}
	at := ""
	if real != filepath.Clean(path) {
		at = " (it leads to " + real + ")"
	}
	return fmt.Sprintf("%s%s is in state_dir %s among the files edged keeps itself (history, audit logs, control socket), which an access log must not write into; name a file outside them", path, at, stateDir)
}
