package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// readDir lists the configuration files under dir and reads them.
func readDir(dir string) (srcs []source, errs, warns []Error) {
	srcs, errs, warns, _ = readDirSince(dir, nil, newResolver())
	return srcs, errs, warns
}

// readDirSince is readDir that takes a file's contents from the previous
// read (prev) instead of reading it again when stat says the file has not
// changed since: same size, inode, device, modification and change time,
// and that change time older than the previous read by stampSlack. The
// slack covers the coarse clock that file times are stamped with (a write
// in the same tick as the read would leave the stamp as it was); any later
// write moves the change time, which no one can set. A reload of a large
// conf.d thus stats the files it did not change instead of reading them.
// With prev nil (a load that will not be repeated) nothing is stat'ed and
// next is nil. The files are found and read through res (see listRelease).
func readDirSince(dir string, prev map[string]readEntry, res *resolver) (srcs []source, errs, warns []Error, next map[string]readEntry) {
	// One release, whole, when dir is a link a deploy re-points.
	paths, reads, errs, warns := listRelease(dir, res)
	var local map[uint64]bool // by device: a local filesystem?
	if prev != nil {
		next = make(map[string]readEntry, len(paths))
		local = make(map[uint64]bool)
	}
	// total counts the files taken from prev too: a load must refuse
	// what a load from scratch (a restart, edged check) would.
	total := 0
	overTotal := func(p string) []Error { return append(errs, totalSizeError(dir, p)) }
	for i, p := range paths {
		var stamp fileStamp
		stamped := false
		if prev != nil {
			stamp, stamped = stampOf(reads[i], local)
		}
		if e, ok := prev[p]; ok && stamped && e.stamp == stamp && e.stamp.ctime < e.readAt.Add(-stampSlack).UnixNano() {
			if total += len(e.data); total > MaxTotalSize {
				return nil, overTotal(p), warns, next
			}
			srcs = append(srcs, source{path: p, data: e.data, sum: e.sum})
			next[p] = e
			continue
		}
		readAt := time.Now()
		data, err := ReadFile(reads[i])
		res.gone(err)
		if err != nil {
			errs = append(errs, Error{Pos: Pos{File: p}, Msg: readProblem(err)})
			continue
		}
		if total += len(data); total > MaxTotalSize {
			return nil, overTotal(p), warns, next
		}
		src := source{path: p, data: data}
		if stamped {
			sum := sha256.Sum256(data)
			src.sum = &sum
			// Taken before the read: a change in between shows next time.
			next[p] = readEntry{stamp: stamp, readAt: readAt, data: data, sum: &sum}
		}
		srcs = append(srcs, src)
	}
	return srcs, errs, warns, next
}

// totalSizeError is the error of the configuration files of dir that add
// up to more than MaxTotalSize at the file p, in path order.
func totalSizeError(dir, p string) Error {
	return Error{Pos: Pos{File: dir}, Msg: fmt.Sprintf(
		"configuration files add up to more than the %d bytes (%d MiB) allowed, at %s; remove files that are not configuration",
		MaxTotalSize, MaxTotalSize>>20, p)}
}

// tooManyFilesError is the error of n configuration files in dir, more
// than maxFiles.
func tooManyFilesError(dir string, n int) Error {
	return Error{Pos: Pos{File: dir}, Msg: fmt.Sprintf(
		"%d configuration files (*.toml), more than the %d allowed; remove files that are not configuration, or merge small ones",
		n, maxFiles)}
}

// readProblem says why a configuration file could not be read; the
// path is the finding's, not repeated.
func readProblem(err error) string {
	var nr *notRegularError
	var tl *tooLargeError
	switch {
	case errors.As(err, &nr):
		return fmt.Sprintf("is %s, not a regular file", fileKind(nr.mode))
	case errors.As(err, &tl):
		return fmt.Sprintf("file is larger than the %d bytes (%s) allowed; split it into several files", tl.limit, sizeName(tl.limit))
	}
	return fmt.Sprintf("cannot read: %v", err)
}

// stampSlack is how long before a read a file must have last changed for
// its stamp to stand for its contents.
var stampSlack = 2 * time.Second

// fileStamp is what stat says of a file.
type fileStamp struct {
	size         int64
	mtime, ctime int64 // ns since the epoch
	ino, dev     uint64
}

// readEntry is a file as one load read it.
type readEntry struct {
	stamp  fileStamp
	readAt time.Time
	data   []byte // shared with that load's sources: never written to
	sum    *[32]byte
}
