package edge

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	return stateFileProblem(path, realPath(path), stateDir)
}

// stateFileProblem is StateFileProblem's verdict on path, which leads to
// real.
func stateFileProblem(path, real, stateDir string) string {
	state := realPath(stateDir)
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

// realPath is the path p leads to once every symlink on the way is
// followed, the last one included when its target does not exist yet
// (opening it would create the target). Relative paths are taken from
// the working directory, as open(2) takes them. It walks p a name at a
// time as the kernel does: a ".." after a symlink (in p or in a link's
// target) is taken from where the link leads, never cancelled against
// the link's own name as filepath.Clean would.
func realPath(p string) string {
	if !filepath.IsAbs(p) {
		if wd, err := os.Getwd(); err == nil {
			p = wd + string(filepath.Separator) + p
		}
	}
	sep := string(filepath.Separator)
	rest := strings.Split(p, sep)
	cur := sep
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		target, err := os.Readlink(next)
		if err != nil || links >= 40 { // the kernel's own bound on links followed
			cur = next // not a link, or not there: the file an open would create
			continue
		}
		links++
		if filepath.IsAbs(target) {
			cur = sep
		}
		rest = append(strings.Split(target, sep), rest...)
	}
	return cur
}
