package history

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestRestoreIsNotRacedIntoALink: Restore checked each directory for a
// link others may have put and then wrote, made directories and moved
// files aside by name, so a writer of prod's home turning prod/orders
// into a link to another directory and back, again and again, had a
// rollback run with sudo write, make or move aside files there. The
// directories are opened one name at a time, as checked, and written in
// through those descriptors.
func TestRestoreIsNotRacedIntoALink(t *testing.T) {
	dir := t.TempDir()
	prod := filepath.Join(dir, "prod")
	orders := filepath.Join(prod, "orders")
	require.NoError(t, os.MkdirAll(orders, 0o755))
	require.NoError(t, os.Chmod(prod, 0o775)) // prod-ops write here
	real, err := os.Open(orders)
	require.NoError(t, err)
	defer real.Close()
	put := func(name, content string) { // into the real directory, wherever it is
		fd, err := unix.Openat(int(real.Fd()), name, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			_, _ = unix.Write(fd, []byte(content))
			unix.Close(fd)
		}
	}
	put("orders.toml", "orders now")
	put("newer.toml", "newer now")

	victim := t.TempDir()
	want := map[string]string{"orders.toml": "not prod's", "newer.toml": "not prod's either"}
	for name, content := range want {
		require.NoError(t, os.WriteFile(filepath.Join(victim, name), []byte(content), 0o644))
	}
	link := filepath.Join(prod, ".link")
	require.NoError(t, os.Symlink(victim, link))

	stop := make(chan struct{})
	done := make(chan struct{})
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
	current := []string{filepath.Join(orders, "orders.toml"), filepath.Join(orders, "newer.toml")}
	touched, restored := 0, 0
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		put("orders.toml", "orders now")
		put("newer.toml", "newer now")
		rec := &Record{Generation: uint64(i + 1), Files: []File{
			{Path: "prod/orders/orders.toml", SHA256: strings.Repeat("0", 64), Content: fmt.Sprintf("orders v%d", i)},
			{Path: "prod/orders/deep/new.toml", SHA256: strings.Repeat("1", 64), Content: fmt.Sprintf("new v%d", i)},
		}}
		if _, err := Restore(rec, dir, current, nil); err == nil {
			restored++
		}
		ents, err := os.ReadDir(victim)
		require.NoError(t, err)
		same := len(ents) == len(want)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(victim, e.Name()))
			if err != nil || string(b) != want[e.Name()] {
				same = false
				_ = os.RemoveAll(filepath.Join(victim, e.Name()))
			}
		}
		if !same {
			touched++
			for name, content := range want {
				require.NoError(t, os.WriteFile(filepath.Join(victim, name), []byte(content), 0o644))
			}
		}
	}
	close(stop)
	<-done
	t.Logf("%d rollbacks restored", restored)
	assert.Zero(t, touched, "rollbacks that wrote, made or moved something in the link's target")
}
