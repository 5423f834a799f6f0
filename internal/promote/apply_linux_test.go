package promote

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestApplyIsNotRacedIntoALink: Apply checked the file and then made its
// temp file, locked, checked again and renamed by path, so a writer of
// prod's home turning prod/orders into a link to uat's home and back,
// again and again, had a promotion run with sudo write into uat's home
// (the promoted file, or its temp file left there). The directory is
// opened one name at a time, following no link others may have put, and
// written in through that descriptor.
func TestApplyIsNotRacedIntoALink(t *testing.T) {
	dir, plan := prodOrders(t)
	prod := filepath.Join(dir, "prod")
	orders := filepath.Join(prod, "orders")
	uat := filepath.Join(dir, "uat")

	real, err := os.Open(orders)
	require.NoError(t, err)
	defer real.Close()
	put := func(content []byte) { // into the real directory, wherever it is
		fd, err := unix.Openat(int(real.Fd()), "orders.toml", unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			_, _ = unix.Write(fd, content)
			unix.Close(fd)
		}
	}
	link := filepath.Join(prod, ".link")
	require.NoError(t, os.Symlink(uat, link))

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
	touched, applied := 0, 0
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		put(plan.Old)
		if _, err := plan.Apply(); err == nil {
			applied++
		}
		if !uatAsItWas(t, uat) {
			touched++
		}
	}
	close(stop)
	<-done
	t.Logf("%d promotions applied", applied)
	assert.Zero(t, touched, "promotions that wrote something in uat's home")
	assert.NotZero(t, applied, "no promotion went through the directory itself")
}

// TestApplyRefusesALinkOthersMayHavePut: prod/orders, the directory of
// the file a promotion replaces, turned into a link to uat's home by a
// writer of prod's home after the promotion was prepared: Apply writes
// nothing, and says which link.
func TestApplyRefusesALinkOthersMayHavePut(t *testing.T) {
	dir, plan := prodOrders(t)
	orders := filepath.Join(dir, "prod", "orders")
	uat := filepath.Join(dir, "uat")
	require.NoError(t, os.Rename(orders, filepath.Join(dir, "prod", ".orders")))
	require.NoError(t, os.Symlink(uat, orders))

	_, err := plan.Apply()
	require.Error(t, err)
	assert.ErrorContains(t, err, orders+" is a symbolic link in "+filepath.Join(dir, "prod"))
	assert.ErrorContains(t, err, "a promotion follows no such link")
	assert.True(t, uatAsItWas(t, uat), "uat's home is left as it was")
}

// uatWants is what uat's home holds in prodOrders.
var uatWants = map[string]string{"uat.toml": uatFile, "orders.toml": "# uat's own orders\n"}

// uatAsItWas reports whether uat's home holds what prodOrders put there,
// and puts it back when it does not.
func uatAsItWas(t *testing.T, uat string) bool {
	ents, err := os.ReadDir(uat)
	require.NoError(t, err)
	same := len(ents) == len(uatWants)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(uat, e.Name()))
		if err != nil || string(b) != uatWants[e.Name()] {
			same = false
			_ = os.RemoveAll(filepath.Join(uat, e.Name()))
		}
	}
	if !same {
		for name, content := range uatWants {
			require.NoError(t, os.WriteFile(filepath.Join(uat, name), []byte(content), 0o644))
		}
	}
	return same
}

// prodOrders is a directory where prod's home (prod/, writable by its
// operators' group) has user-service in prod/orders/orders.toml, and
// uat's home is uat/; and the plan of promoting user-service from test
// to prod, prepared.
func prodOrders(t *testing.T) (string, *Plan) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.toml"), []byte(testFile), 0o644))
	prod := filepath.Join(dir, "prod")
	orders := filepath.Join(prod, "orders")
	require.NoError(t, os.MkdirAll(orders, 0o755))
	require.NoError(t, os.Chmod(prod, 0o775)) // prod-ops write here
	require.NoError(t, os.WriteFile(filepath.Join(prod, "prod.toml"), []byte(`[[environment]]
name = "prod"

[[upstream]]
name = "user-backend"
environment = "prod"
nodes = [{ url = "http://127.0.0.1:9301" }]
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(orders, "orders.toml"), []byte(`[[proxy]]
name = "user-service"
environment = "prod"
base_path = "/users"
upstream = "user-backend"
`), 0o644))
	uat := filepath.Join(dir, "uat")
	require.NoError(t, os.Mkdir(uat, 0o755))
	for name, content := range uatWants {
		require.NoError(t, os.WriteFile(filepath.Join(uat, name), []byte(content), 0o644))
	}
	plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "prod", Now: fixedNow})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(orders, "orders.toml"), plan.File)
	return dir, plan
}

// TestApplyRefusalSaysWhatToChange: the refusal of a link others may
// have put says what would make the directory holding it one whose links
// are followed. A directory whose group or others may write to it is to
// be made writable by its owner only; one that only its owner may write
// to, but whose owner is a user other than root and the caller (prod's
// operators' account), is to be given to root (or the caller): making it
// "writable by its owner only", as the refusal said, changed nothing.
func TestApplyRefusalSaysWhatToChange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give prod's home to another user")
	}
	for _, c := range []struct {
		name   string
		mode   os.FileMode
		uid    int
		advice string
	}{
		{"group-writable", 0o775, 0, "make %s writable by its owner only"},
		{"owned by another user", 0o755, 65534, "have %s owned by root or by the user running this command (it is nobody's)"},
		{"both", 0o775, 65534, "make %s writable by its owner only, and owned by root or by the user running this command (it is nobody's)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, plan := prodOrders(t)
			prod := filepath.Join(dir, "prod")
			orders := filepath.Join(prod, "orders")
			require.NoError(t, os.Rename(orders, filepath.Join(prod, ".orders")))
			require.NoError(t, os.Symlink(filepath.Join(dir, "uat"), orders))
			require.NoError(t, os.Chmod(prod, c.mode))
			require.NoError(t, os.Chown(prod, c.uid, 0))

			_, err := plan.Apply()
			require.Error(t, err)
			assert.ErrorContains(t, err, "a promotion follows no such link")
			assert.ErrorContains(t, err, "put the directory itself there, or "+fmt.Sprintf(c.advice, prod))
			assert.True(t, uatAsItWas(t, filepath.Join(dir, "uat")), "uat's home is left as it was")
		})
	}
}
