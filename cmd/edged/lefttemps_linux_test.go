package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestPromoteRemovesLeftTempsOnlyWhereItWrites: before writing, a
// promotion removes the temp files a killed one left beside its file; it
// did so by path, so a writer of prod's home turning prod/orders into a
// link to uat's home and back had a promotion run with sudo remove uat's
// files of that name, where the write itself (walked one name at a time,
// following no link others may have put) refused to go. The removal now
// happens in the directory the write walked to.
func TestPromoteRemovesLeftTempsOnlyWhereItWrites(t *testing.T) {
	dir := t.TempDir()
	prod := filepath.Join(dir, "prod")
	orders := filepath.Join(prod, "orders")
	uat := filepath.Join(dir, "uat")
	require.NoError(t, os.MkdirAll(orders, 0o755))
	require.NoError(t, os.Mkdir(uat, 0o755))
	require.NoError(t, os.Chmod(prod, 0o775)) // prod's operators write here
	write := func(path, content string) { require.NoError(t, os.WriteFile(path, []byte(content), 0o644)) }
	write(filepath.Join(dir, "server.toml"), "[server]\nstate_dir = \""+filepath.Join(dir, ".state")+"\"\n")
	write(filepath.Join(dir, "test.toml"), `[[environment]]
name = "test"

[[proxy]]
name = "orders"
environment = "test"
base_path = "/orders"
target = "http://127.0.0.1:9101"
`)
	const prodFile = "[[environment]]\nname = \"prod\"\n"
	const ordersFile = "[[proxy]]\nname = \"orders\"\nenvironment = \"prod\"\nbase_path = \"/orders\"\ntarget = \"http://127.0.0.1:9301\"\n"
	write(filepath.Join(prod, "prod.toml"), prodFile)
	write(filepath.Join(orders, "orders.toml"), ordersFile)
	write(filepath.Join(uat, "uat.toml"), "[[environment]]\nname = \"uat\"\n")
	uatTemp := filepath.Join(uat, ".orders.toml.tmp-1")
	write(uatTemp, "uat's")

	real, err := os.Open(orders)
	require.NoError(t, err)
	defer real.Close()
	put := func(name, content string) { // into the real prod/orders, wherever it is
		fd, err := unix.Openat(int(real.Fd()), name, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		require.NoError(t, err)
		_, err = unix.Write(fd, []byte(content))
		unix.Close(fd)
		require.NoError(t, err)
	}
	link := filepath.Join(prod, ".link")
	require.NoError(t, os.Symlink(uat, link))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// orders is always there, a directory or a link.
			_ = unix.Renameat2(unix.AT_FDCWD, orders, unix.AT_FDCWD, link, unix.RENAME_EXCHANGE)
		}
	}()
	removedFromUat, removedOwn, promoted := 0, 0, 0
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		// prod as it was (a promotion that saw no prod/orders added its
		// block to prod.toml), and a temp file a killed promotion left
		// in the real prod/orders.
		write(filepath.Join(prod, "prod.toml"), prodFile)
		put(".orders.toml.tmp-7", "")
		put("orders.toml", ordersFile)
		code, _, _ := runEdged(t, "promote", "orders", "--from", "test", "--to", "prod", "--target", "http://127.0.0.1:9302", "--no-wait", "-c", dir)
		if code == 0 {
			promoted++
		}
		if unix.Faccessat(int(real.Fd()), ".orders.toml.tmp-7", unix.F_OK, 0) != nil {
			removedOwn++
		}
		if _, err := os.Lstat(uatTemp); err != nil {
			removedFromUat++
			write(uatTemp, "uat's")
		}
	}
	close(stop)
	<-done
	t.Logf("%d promotions applied, %d removed their own left temp file", promoted, removedOwn)
	assert.Zero(t, removedFromUat, "promotions that removed a file in uat's home")
	assert.NotZero(t, removedOwn, "no promotion removed the temp file left where it writes")
}
