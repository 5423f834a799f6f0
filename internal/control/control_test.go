package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCallReachesTheHandlerThroughAPrivateSocket(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir)
	srv, err := Listen(context.Background(), path, func(_ context.Context, req Request) (any, error) {
		if cmd := req.Command; cmd == "reload" {
			return map[string]int{"generation": 7}, nil
		}
		return nil, errors.New("unknown command " + req.Command)
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
	h := func(context.Context, Request) (any, error) { return "ok", nil }
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

// TestMain lets the test binary stand in for another process holding a
// control socket: with CONTROL_TEST_HOLD=PATH it listens on PATH, says
// "ready" and waits to be killed.
func TestMain(m *testing.M) {
	if path := os.Getenv("CONTROL_TEST_HOLD"); path != "" {
		ln, err := net.Listen("unix", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(3)
			}
			c.Close()
		}
	}
	os.Exit(m.Run())
}

func TestListenReplacesTheSocketOfADeadProcessOnly(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir)
	exe, err := os.Executable()
	require.NoError(t, err)
	other := exec.Command(exe, "-test.run=^$")
	other.Env = append(os.Environ(), "CONTROL_TEST_HOLD="+path)
	stdout, err := other.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)

	h := func(context.Context, Request) (any, error) { return "ok", nil }
	_, err = Listen(context.Background(), path, h, nil)
	require.Error(t, err, "a live process holds the socket")
	assert.Contains(t, err.Error(), "another edged is listening")

	// SIGKILL: the process cannot remove its socket file.
	require.NoError(t, other.Process.Kill())
	_ = other.Wait()
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket, fi.Mode().Type(), "the dead process left its socket behind")

	srv, err := Listen(context.Background(), path, h, nil)
	require.NoError(t, err, "the stale socket is replaced")
	defer srv.Close()
	fi, err = os.Lstat(path)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket, fi.Mode().Type())
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	var got string
	require.NoError(t, Call(path, "x", 5*time.Second, &got))
	assert.Equal(t, "ok", got)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing left beside the socket: %v", entries)
	assert.Equal(t, SocketName, entries[0].Name())
}

func TestSocketIsPrivateWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := Path(t.TempDir())
	srv, err := Listen(context.Background(), path, func(context.Context, Request) (any, error) { return nil, nil }, nil)
	require.NoError(t, err)
	defer srv.Close()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Equal(t, 0, syscall.Umask(0), "Listen left the umask alone")
}

// Files other goroutines create while the control socket comes up get the
// process's umask, not one Listen borrowed for its socket.
func TestListenLeavesTheUmaskOfOtherGoroutinesAlone(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir, files := t.TempDir(), t.TempDir()
	stop := make(chan struct{})
	var wrong []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := filepath.Join(files, strconv.Itoa(i))
			if err := os.WriteFile(p, nil, 0o666); err != nil {
				wrong = append(wrong, err.Error())
				return
			}
			fi, err := os.Stat(p)
			if err != nil {
				wrong = append(wrong, err.Error())
				return
			}
			if fi.Mode().Perm() != 0o644 {
				wrong = append(wrong, fmt.Sprintf("%s: %v", p, fi.Mode().Perm()))
				return
			}
			os.Remove(p)
		}
	}()
	h := func(context.Context, Request) (any, error) { return nil, nil }
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		srv, err := Listen(context.Background(), Path(dir), h, nil)
		require.NoError(t, err)
		require.NoError(t, srv.Close())
	}
	close(stop)
	<-done
	assert.Empty(t, wrong, "a file created with the umask Listen set for its socket")
}

// The server learns who called from the kernel, and the arguments from the
// line; a bare command still works.
func TestRequestCarriesArgumentsAndThePeer(t *testing.T) {
	path := Path(t.TempDir())
	got := make(chan Request, 2)
	srv, err := Listen(context.Background(), path, func(_ context.Context, req Request) (any, error) {
		got <- req
		return nil, nil
	}, nil)
	require.NoError(t, err)
	defer srv.Close()

	require.NoError(t, CallWith(path, "reload", map[string]string{"cause": "edged promote"}, 5*time.Second, nil))
	req := <-got
	assert.Equal(t, "reload", req.Command)
	assert.JSONEq(t, `{"cause":"edged promote"}`, string(req.Args))
	if runtime.GOOS == "linux" {
		require.True(t, req.Peer.Known)
		assert.Equal(t, uint32(os.Getuid()), req.Peer.UID)
		assert.Equal(t, uint32(os.Getgid()), req.Peer.GID)
		assert.Equal(t, os.Getpid(), req.Peer.PID)
	}

	require.NoError(t, Call(path, "reload", 5*time.Second, nil))
	req = <-got
	assert.Equal(t, "reload", req.Command)
	assert.Empty(t, req.Args)

	err = CallWith(path, "reload", map[string]string{"x": strings.Repeat("a", maxLine)}, 5*time.Second, nil)
	assert.ErrorContains(t, err, "more than")
}

func TestPeerUser(t *testing.T) {
	root := Peer{Known: true, UID: 0}
	assert.Equal(t, "root", root.User(""))
	assert.Equal(t, "alice (via sudo, uid 0)", root.User("alice"))
	assert.Equal(t, "root", root.User("bad\nname"), "a sudo user that is no user name is ignored")
	assert.Equal(t, "4000000", Peer{Known: true, UID: 4000000}.User(""))
	assert.Equal(t, "", Peer{}.User(""))
	assert.Equal(t, "alice (via sudo, uid unknown)", Peer{}.User("alice"))
}

// A flood of connections to the control socket (a loop of `edged reload`,
// a client that connects and waits) is served maxConns at a time: the
// rest wait in the kernel's listen queue, not as goroutines and
// descriptors of edged, and are answered once the earlier ones are.
func TestConnectionsAreServedAFewAtATime(t *testing.T) {
	path := Path(t.TempDir())
	release := make(chan struct{})
	var mu sync.Mutex
	var now, most int
	srv, err := Listen(context.Background(), path, func(context.Context, Request) (any, error) {
		mu.Lock()
		now++
		most = max(most, now)
		mu.Unlock()
		<-release
		mu.Lock()
		now--
		mu.Unlock()
		return "ok", nil
	}, nil)
	require.NoError(t, err)
	defer srv.Close()

	const clients = 3 * maxConns
	errs := make(chan error, clients)
	for range clients {
		go func() { errs <- Call(path, "reload", 60*time.Second, nil) }()
	}
	// Wait until the server holds as many as it will.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return now >= maxConns
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // room for any more to come in
	mu.Lock()
	assert.Equal(t, maxConns, most, "connections served at once")
	mu.Unlock()
	close(release)
	for range clients {
		assert.NoError(t, <-errs, "every caller is answered in the end")
	}
}

// TestCallBoundsTheAnswer: the answer read from the socket is bounded.
// Whatever listens at the path (another program's socket named by
// --control, a process that took a stale socket's place) could send an
// answer without end, and the client decoded it whole into memory until
// its --timeout (60 s for edged reload).
func TestCallBoundsTheAnswer(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	defer ln.Close()
	const sent = 4 * maxAnswer
	wrote := make(chan int64, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			wrote <- -1
			return
		}
		defer c.Close()
		bufio.NewReader(c).ReadString('\n')
		// One JSON string of sent bytes, never ended; then silence, the
		// connection held open.
		n, _ := c.Write([]byte(`{"ok":true,"error":"`))
		chunk := []byte(strings.Repeat("a", 64<<10))
		total := int64(n)
		for total < sent {
			n, err := c.Write(chunk)
			total += int64(n)
			if err != nil {
				break
			}
		}
		wrote <- total
		<-stop
	}()
	err = Call(path, "reload", 20*time.Second, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("the answer is larger than the %d bytes a control answer may have", maxAnswer))
	select {
	case n := <-wrote:
		// What the socket's buffers took besides: a few hundred KiB.
		assert.Less(t, n, int64(maxAnswer+4<<20), "bytes the client took of the %d sent", sent)
	case <-time.After(10 * time.Second):
		t.Fatal("the server is still writing: the client did not stop reading")
	}
}

// failingListener fails its next accepts with err, as accept4 does, then
// accepts on the real listener.
type failingListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	err   error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "unix", Addr: l.Addr(), Err: os.NewSyscallError("accept4", l.err)}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// An accept that fails for any reason but a closed listener is waited out
// too: ENOMEM or ENOBUFS (a memory limit reached for a moment) stopped the
// control socket, and `edged reload` (systemctl reload), promote and
// rollback went unanswered until a restart.
func TestAcceptFailureOtherThanDescriptorsIsRetried(t *testing.T) {
	path := Path(t.TempDir())
	ln, err := listenPrivate(filepath.Dir(path), path)
	require.NoError(t, err)
	s := &Server{ln: &failingListener{Listener: ln, fails: 2, err: syscall.ENOMEM}, path: path, closed: make(chan struct{})}
	s.wg.Add(1)
	go s.serve(context.Background(), func(context.Context, Request) (any, error) { return "ok", nil })
	defer s.Close()
	assert.NoError(t, Call(path, "reload", 5*time.Second, nil), "answered after the failed accepts")
}
