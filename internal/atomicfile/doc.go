// Package atomicfile replaces a file in one rename, so that a reader (a
// running edged loading conf.d, or watching it) sees the old content or
// the new, never half a file.
//
// The content goes to a dot-named temp file in the same directory (which
// the config loader and the watcher skip), is synced, given its mode (and
// owner), and renamed over the path; the directory is synced after the
// rename (and a directory MkdirAll makes, in its parent), so that what
// was written survives a crash. edged promote and rollback write
// configuration files through it; the history store its records.
//
// It must never leave a temp file behind (one killed between the write
// and the rename does: RemoveLeftTempsIn clears them), and never replace a file with
// one its owner's service could not read: when the owner cannot be
// carried over, the file is left as it was.
package atomicfile
