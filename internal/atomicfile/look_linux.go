package atomicfile

import "golang.org/x/sys/unix"

// lookFlags open a file only to see what it is and whose (fstat): with
// O_PATH, as ReplaceFile by path looked with stat(2), a file this process
// may replace but not read, and a named pipe, open at once.
const lookFlags = unix.O_PATH
