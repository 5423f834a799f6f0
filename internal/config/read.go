package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// maxTLSFileSize bounds what is read from a certificate, key or CA file; a
// bundle of every public root CA is about 200 KiB of PEM.
const maxTLSFileSize = 1 << 20

// ReadFile reads a configuration file the way Load does: see readRegular,
// with MaxFileSize as the limit.
func ReadFile(path string) ([]byte, error) {
	return readRegular(path, MaxFileSize)
}

// ReadRegular reads the regular file at path, of at most limit bytes, as
// the loader reads its files (see readRegular): a FIFO is not waited on,
// a device is not read, a file over limit is not read past it. Its
// errors match ErrNotRegular and ErrTooLarge (errors.Is).
func ReadRegular(path string, limit int64) ([]byte, error) {
	return readRegular(path, limit)
}

// ErrNotRegular and ErrTooLarge match, with errors.Is, the errors of
// OpenRegular, ReadRegular, ReadOpened and ReadFile for a path that is no regular
// file and for a file over the limit.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
)

// readTLSFile reads a certificate, key or CA file: see readRegular.
func readTLSFile(path string) ([]byte, error) {
	return readRegular(path, maxTLSFileSize)
}

// notRegularError is a path that names something other than a regular
// file.
type notRegularError struct {
	path string
	mode fs.FileMode
}

func (e *notRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.path, fileKind(e.mode))
}

func (e *notRegularError) Is(target error) bool { return target == ErrNotRegular }

// tooLargeError is a file over the limit its reader was given.
type tooLargeError struct {
	path  string
	limit int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than the %d bytes (%s) allowed", e.path, e.limit, sizeName(e.limit))
}

func (e *tooLargeError) Is(target error) bool { return target == ErrTooLarge }

// OpenRegular opens the regular file at path for reading. Opening a FIFO
// for reading waits for a writer, for ever: so the file is opened with
// O_NONBLOCK, which makes that open return at once, and what fstat says
// of the opened file decides, so that a swap between a check by name and
// the open changes nothing. A device, socket, directory or FIFO is a
// *notRegularError and is never read. The loader reads through it, and
// the watcher (internal/watch) hashes through it.
func OpenRegular(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := regularStat(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// regularStat is what fstat says of f, a *notRegularError when f is no
// regular file.
func regularStat(f *os.File) (fs.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &notRegularError{path: f.Name(), mode: fi.Mode()}
	}
	return fi, nil
}

// ReadOpened reads f, opened for reading with O_NONBLOCK by a caller
// that had to choose how (edged diff, which follows no link others may
// have put), as readRegular reads a path: a regular file only, of at
// most limit bytes.
func ReadOpened(f *os.File, limit int64) ([]byte, error) {
	fi, err := regularStat(f)
	if err != nil {
		return nil, err
	}
	return readBounded(f, fi, limit)
}

// readRegular reads the regular file at path (see OpenRegular), of at
// most limit bytes. The read goes through a limit, so a file growing
// while it is read stops at limit+1 bytes: a *tooLargeError.
func readRegular(path string, limit int64) ([]byte, error) {
	f, fi, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(f, fi, limit)
}

// readBounded reads f, the regular file fi describes, of at most limit
// bytes; errors name f.Name().
func readBounded(f *os.File, fi fs.FileInfo, limit int64) ([]byte, error) {
	path := f.Name()
	if fi.Size() > limit {
		return nil, &tooLargeError{path: path, limit: limit}
	}
	// Sized from stat like os.ReadFile, plus one byte to see the end (or
	// growth) without a second allocation.
	data := make([]byte, 0, fi.Size()+1)
	r := io.LimitReader(f, limit+1)
	for {
		n, err := r.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
	}
	if int64(len(data)) > limit {
		return nil, &tooLargeError{path: path, limit: limit}
	}
	return data, nil
}

// fileKind names the type of a file that is not regular, for messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file (mode " + m.String() + ")"
}

// sizeName renders a limit as people write it: "4 MiB", "512 KiB".
func sizeName(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
