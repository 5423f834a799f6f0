//go:build !unix

package config

import "os"

// openDir opens the directory d to list it.
func openDir(d string) (*os.File, error) { return os.Open(d) }
