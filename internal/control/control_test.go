package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCallReachesTheHandlerThroughAPrivateSocket(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir)
	srv, err := Listen(context.Background(), path, func(_ context.Context, cmd string) (any, error) {
		if cmd == "reload" {
			return map[string]int{"generation": 7}, nil
		}
		return nil, errors.New("unknown command " + cmd)
	}, nil)
	require.NoError(t, err)
	defer srv.Close()

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "only the owner may connect")
	assert.Equal(t, os.ModeSocket, fi.Mode().Type())

	var out struct{ Generation int }
	require.NoError(t, Call(path, "reload", 5*time.Second, &out))
	assert.Equal(t, 7, out.Generation)

	err = Call(path, "explode", 5*time.Second, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown command explode")
}

func TestListenRefusesASecondServerAndReplacesAStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	h := func(context.Context, string) (any, error) { return "ok", nil }
	first, err := Listen(context.Background(), path, h, nil)
	require.NoError(t, err)
	_, err = Listen(context.Background(), path, h, nil)
	require.Error(t, err, "another edged is listening")
	require.NoError(t, first.Close())
	_, err = os.Stat(path)
	assert.True(t, os.IsNotExist(err), "Close removes the socket")

	// A socket file left behind by a crash is replaced.
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	second, err := Listen(context.Background(), path, h, nil)
	require.NoError(t, err)
	defer second.Close()
	require.NoError(t, Call(path, "x", 5*time.Second, nil))
}

func TestCallWithoutServerSaysNotRunning(t *testing.T) {
	err := Call(filepath.Join(t.TempDir(), SocketName), "reload", time.Second, nil)
	assert.ErrorIs(t, err, ErrNotRunning)
}
