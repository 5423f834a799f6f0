package edge

import (
	"fmt"
	"path/filepath"
	"strings"

	"edged/internal/config"
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

// logPlace is where an access log's file may be: never among the files
// edged keeps in stateDir, and, where logDir ([server] access_log_dir) is
// set, in logDir or below. The zero logPlace is anywhere (an audit log,
// which edged names itself).
type logPlace struct {
	stateDir, logDir string
}

// problem is the place's verdict on path, which leads to real: why an
// access log may not be written there, or "".
func (pl logPlace) problem(path, real string) string {
	if msg := stateFileProblem(path, real, pl.stateDir); msg != "" {
		return msg
	}
	if pl.logDir != "" && !config.InAccessLogDir(real, pl.logDir) {
		at := ""
		if real != filepath.Clean(path) {
			at = " (it leads to " + real + ")"
		}
		return fmt.Sprintf("%s%s is outside [server] access_log_dir %s, where the environments' access logs must be; name a file in it or below", path, at, pl.logDir)
	}
	return ""
}

// stateFileProblem is StateFileProblem's verdict on path, which leads to
// real.
func stateFileProblem(path, real, stateDir string) string {
	if stateDir == "" {
		return ""
	}
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
