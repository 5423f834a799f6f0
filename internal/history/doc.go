// Package history records every applied configuration generation under
// state_dir — number, time, trigger, cause and user, the files changed
// (with owner and modification time), each file's hash and content, and
// what changed per environment — plus an audit log line per reload
// attempt. It holds the .toml files only, never certificates or keys. It
// lists generations and restores the files of one into the config
// directory. It never applies anything itself: a restore is picked up by
// the running process like any other file change.
package history
