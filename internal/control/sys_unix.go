package control

import "syscall"

var errConnRefused = syscall.ECONNREFUSED
