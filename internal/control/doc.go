// Package control is edged's local control channel: a Unix socket under
// state_dir, mode 0600, through which `edged reload` asks the running
// process to reload and learns the outcome. It is never a TCP listener:
// file permissions are the access control. Each request carries the
// caller's uid and pid as the kernel gives them (SO_PEERCRED on Linux), so
// the process can record who asked for a change.
package control
