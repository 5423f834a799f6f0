// Package watch tells edged when its configuration may have changed: the
// *.toml files under the config directory and the certificate and key files
// that virtual hosts name, wherever those live.
//
// It watches directories, never files, with fsnotify: editors that save by
// writing a temporary file and renaming it over the original, cp over a
// file, in-place writes, deletes, and the Kubernetes ConfigMap/Secret
// "..data" symlink swap all show up as events in a watched directory. So
// does a change of mode or owner, reported for the names a content change
// would be: it may let edged read a file a reload failed on.
// Subdirectories of the config directory are added as they appear and
// dropped as they go. The directories holding symlinks on the way to an
// extra file or to the config directory (certs -> certs-v2, current ->
// releases/v2, or one further up) are watched for those names, and a
// re-pointed link moves the watches to where it leads now. An extra or
// config file that is a symlink into another directory is watched there
// too, for a save of its target. A subdirectory or config file of the
// tree that is a symlink out of its directory (conf.d/prod ->
// /srv/prod/current) is followed the same way: the links on the way to
// its target, and the target in its own directory, are watched, so a
// release link re-pointed further on, or the target removed and made
// again or replaced by a rename, moves the watches with it. Bursts are
// coalesced into one Event after a quiet period, capped by a maximum
// wait. Because inotify misses changes on some
// bind mounts and network file systems, a periodic rescan compares content
// hashes as a safety net, and a kernel queue overflow is reported as "look
// at everything".
//
// It walks the config tree with the loader's own walk (config.Walk) and
// opens files as the loader does (config.OpenRegular), so a file the
// loader reads is a file it watches.
//
// The package must never parse, validate or apply configuration, never
// read files on the request path, and never decide that a change does not
// matter beyond the name rules the config loader itself uses (dotfiles,
// exact ".toml" suffix): it may report a change that turns out to be none,
// it must not swallow one.
package watch
