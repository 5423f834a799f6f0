package edge

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"edged/internal/realpath"
)

// openOutsideState opens path with flags (O_CREAT among them) unless the
// file it reaches is not in place: one edged keeps in its state_dir
// (StateFileProblem), or outside access_log_dir (logPlace.problem). The
// check and the open are one step: a check of the path followed by an
// open of the path leaves a moment in which a link on it (in a home, its
// operators') can be turned to lead into state_dir. So the path's
// directory is opened first and checked where that descriptor is, then
// the last name opened in it without following a link. When the last
// name is a link, the kernel follows it to a file that exists (a /proc
// link to a pipe or socket included), and the file it opened is checked
// where it is; a link to a file yet to be made is followed by hand, up to
// the kernel's 40.
func openOutsideState(path string, place logPlace, flags int, perm uint32) (*os.File, error) {
	p := path
	for links := 0; links <= 40; links++ {
		dirName, name := splitLast(p)
		dir, err := openDirPath(dirName)
		if err != nil {
			return nil, err
		}
		at, ok := fdPath(dir.Fd())
		if !ok {
			at = realpath.ForCreate(dirName) // no /proc: the check is made on the path, as before
		}
		full := strings.TrimSuffix(at, "/") + "/" + name
		if msg := place.problem(path, realpath.ForCreate(full)); msg != "" {
			dir.Close()
			return nil, errors.New(msg)
		}
		f, err := openAt(dir, name, flags|syscall.O_NOFOLLOW, perm, path)
		if !errors.Is(err, syscall.ELOOP) {
			dir.Close()
			return f, err
		}
		f, err = openAt(dir, name, flags&^os.O_CREATE, perm, path)
		dir.Close()
		if err == nil {
			if real, ok := fdPath(f.Fd()); ok && strings.HasPrefix(real, "/") {
				if msg := place.problem(path, real); msg != "" {
					f.Close()
					return nil, errors.New(msg)
				}
			}
			return f, nil
		}
		if !errors.Is(err, syscall.ENOENT) {
			return nil, err
		}
		target, err := os.Readlink(full)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(target, "/") {
			target = strings.TrimSuffix(at, "/") + "/" + target
		}
		p = target
	}
	return nil, &os.PathError{Op: "open", Path: path, Err: syscall.ELOOP}
}

// openDirPath opens the directory d for its path alone (O_PATH): enough
// to open a name in it and see where it is, and, like an open by name,
// it takes search permission only, not read (a home made 0711).
func openDirPath(d string) (*os.File, error) {
	fd, err := syscall.Open(d, unix.O_PATH|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d, Err: err}
	}
	return os.NewFile(uintptr(fd), d), nil
}

// openAt opens name in dir, errors naming path.
func openAt(dir *os.File, name string, flags int, perm uint32, path string) (*os.File, error) {
	fd, err := syscall.Openat(int(dir.Fd()), name, flags|syscall.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// fdPath is where the kernel says the open descriptor fd is: a path, or
// for a pipe or socket a name such as "pipe:[123]".
func fdPath(fd uintptr) (string, bool) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	return p, err == nil
}

// splitLast splits p at its last slash without cleaning it: a ".." after
// a link is the kernel's to take, from where the link leads.
func splitLast(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	switch {
	case i < 0:
		return ".", p
	case i == 0:
		return "/", p[1:]
	}
	return p[:i], p[i+1:]
}
