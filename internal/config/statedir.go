package config

import (
	"path/filepath"
	"strings"
)

// StateDir returns the state_dir the configuration in dir asks for, even
// when parts of it are broken: each file directly in dir (where [server]
// must be: the directories below may be environments' homes, whose writers
// must not choose where edged's commands find the history and the control
// socket) is decoded on its own; the first [server] table (in path order)
// that sets state_dir wins, a relative value
// resolved against the directory of its file. A file that does not parse
// is read line by line for state_dir in its [server] table, since the
// operator's broken edit is most often the one being reloaded. Without one
// it is DefaultStateDir. edged reload uses it to find the control socket of
// the running process.
func StateDir(dir string) string {
	paths, _, _ := listFiles(dir)
	top := filepath.Clean(dir)
	for _, p := range paths {
		if filepath.Dir(p) != top {
			continue
		}
		data, err := ReadFile(p)
		if err != nil {
			continue
		}
		var doc struct {
			Server *struct {
				StateDir *string `toml:"state_dir"`
			} `toml:"server"`
		}
		v := ""
		if err := decodeTOML(data, &doc); err != nil {
			v = scanStateDir(string(data))
		} else if doc.Server != nil && doc.Server.StateDir != nil {
			v = *doc.Server.StateDir
		}
		if v != "" {
			return resolvePath(filepath.Dir(p), v)
		}
	}
	return DefaultStateDir
}

// scanStateDir finds state_dir in a file that does not parse as a whole:
// `state_dir = "..."` in its [server] table, or `server.state_dir = "..."`
// ahead of any table; "" when there is none or its value does not parse.
func scanStateDir(data string) string {
	table, top := "", true
	for line := range strings.Lines(data) {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			head, _, _ := strings.Cut(t, "#")
			table, top = strings.TrimSpace(head), false
			continue
		}
		key, val, ok := strings.Cut(t, "=")
		key = strings.TrimSpace(key)
		if !ok || !(table == "[server]" && key == "state_dir" || top && key == "server.state_dir") {
			continue
		}
		var v struct {
			V string `toml:"v"`
		}
		if err := decodeTOML([]byte("v = "+strings.TrimSpace(val)), &v); err == nil {
			return v.V
		}
	}
	return ""
}
