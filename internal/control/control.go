package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// SocketName is the control socket's file name inside state_dir.
const SocketName = "edged.sock"

// Path is the control socket of a state directory.
func Path(stateDir string) string { return filepath.Join(stateDir, SocketName) }

// Request is one command as the server received it.
type Request struct {
	Command string
	// Args is the JSON object that followed the command on its line, if
	// any ("reload" alone is still a whole request).
	Args json.RawMessage
	// Peer is who is at the other end, as the kernel says (SO_PEERCRED),
	// not as the client claims.
	Peer Peer
}

// Handler answers one request with a JSON-encodable value.
type Handler func(ctx context.Context, req Request) (any, error)

// Server accepts commands on the control socket, one per connection.
type Server struct {
	ln   net.Listener
	path string
	wg   sync.WaitGroup
	log  *slog.Logger
	// closed is closed by Close: it ends a wait between two accepts.
	closed    chan struct{}
	closeOnce sync.Once
}

// maxPathLen is the longest path a Unix socket may have on Linux:
// sun_path holds 108 bytes with the terminating NUL.
const maxPathLen = 107

// CheckPath fails when a socket cannot be bound at path because the path,
// or the temporary name Listen binds it under first (a directory beside
// it, ".", up to 10 random digits, "/s"), is longer than a Unix socket
// path may be: the bind's own error says only "invalid argument".
func CheckPath(path string) error {
	n := max(len(path), len(filepath.Dir(path))+len("/.")+10+len("/s"))
	if n > maxPathLen {
		return fmt.Errorf("control socket %s: its path (with the temporary name it is bound under first) is %d bytes, more than the %d a Unix socket path may have; choose a shorter state_dir", path, n, maxPathLen)
	}
	return nil
}

// Listen creates the socket at path (replacing a stale one), readable and
// writable by the owner only, and serves commands with h until Close.
func Listen(ctx context.Context, path string, h Handler, log *slog.Logger) (*Server, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	if InUse(path) {
		return nil, fmt.Errorf("%s: %w", path, ErrInUse)
	}
	ln, err := listenPrivate(dir, path)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, path: path, log: log, closed: make(chan struct{})}
	s.wg.Add(1)
	go s.serve(ctx, h)
	return s, nil
}

// ErrInUse means a live process listens on the control socket: another
// edged uses the same state_dir.
var ErrInUse = errors.New("another edged is listening there")

// InUse reports whether a process accepts connections on the socket at
// path; a file left by a process that died refuses them.
func InUse(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// listenPrivate binds the socket inside a fresh 0700 directory next to
// path, makes it 0600 and renames it onto path, which replaces a stale
// socket atomically. Nobody else can connect before it is private, and
// the process-wide umask, which other goroutines' files depend on, is
// left alone.
func listenPrivate(dir, path string) (*net.UnixListener, error) {
	tmpDir, err := os.MkdirTemp(dir, ".") // a short name: socket paths are limited to 107 bytes
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// Closing must not unlink the temporary name; Server.Close removes path.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func (s *Server) serve(ctx context.Context, h Handler) {
	defer s.wg.Done()
	slots := make(chan struct{}, maxConns)
	var backoff time.Duration
	for {
		slots <- struct{}{}
		c, err := s.ln.Accept()
		if err != nil {
			<-slots
			if !s.retryAccept(err, &backoff) {
				return
			}
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-slots }()
			s.handle(ctx, c, h)
		}()
	}
}

// retryAccept waits before the next accept after a failed one, as the
// client listeners' accept loops do, and reports whether to go on: any
// failure but a closed listener is a moment's (EMFILE, ENFILE: the
// proxy's connections took every descriptor; ENOMEM, ENOBUFS under a
// memory limit) or one connection's. Returning would leave the socket
// bound and never answered again: every later edged reload (systemctl
// reload), promote and rollback would wait out its timeout, until a
// restart. A closed listener ends the loop.
func (s *Server) retryAccept(err error, backoff *time.Duration) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	if *backoff == 0 && s.log != nil {
		s.log.Warn("control socket: accept failed; retrying", "path", s.path, "error", err.Error())
	}
	*backoff = min(max(2**backoff, 5*time.Millisecond), time.Second)
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closed:
		return false
	}
}

// maxConns is how many control connections are served at once. Past it
// the accept loop waits, and further clients wait in the kernel's listen
// queue, not as goroutines and descriptors of edged: a local loop of
// `edged reload`, or a client that connects and says nothing for the read
// timeout, must not take the descriptors the proxy needs. Reloads run one
// at a time anyway.
const maxConns = 16

// maxLine bounds a request line: a command and its arguments (a
// promotion's or rollback's announcement lists the files it writes).
const maxLine = 1 << 20

// maxAnswer bounds an answer as a client reads it. The largest edged
// sends is a refused reload's: its first 100 errors, each cut to a few
// KiB (edge.ClipError), well under 4 MiB of JSON however escaped. Without
// it, whatever listens at the path a client is given (--control, a
// socket that took a stale one's place) could have it read an answer
// without end until its timeout.
const maxAnswer = 16 << 20

// Response is one answer on the socket.
type Response struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

func (s *Server) handle(ctx context.Context, c net.Conn, h Handler) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, maxLine)).ReadString('\n')
	if err != nil {
		return
	}
	req := parseRequest(line)
	req.Peer = peerOf(c)
	cmd := req.Command
	var resp Response
	v, err := h(ctx, req)
	if err != nil {
		resp.Error = err.Error()
	} else {
		resp.OK = true
		if b, err := json.Marshal(v); err == nil {
			resp.Result = b
		}
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(c).Encode(resp); err != nil && s.log != nil {
		s.log.Warn("control: answering failed", "command", cmd, "error", err.Error())
	}
}

// parseRequest splits a line into the command and its JSON arguments.
func parseRequest(line string) Request {
	line = strings.TrimSpace(line)
	cmd, args, _ := strings.Cut(line, " ")
	req := Request{Command: cmd}
	if args = strings.TrimSpace(args); args != "" {
		req.Args = json.RawMessage(args)
	}
	return req
}

// Close stops accepting, waits for answers under way, removes the socket.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	err := s.ln.Close()
	s.wg.Wait()
	_ = os.Remove(s.path)
	return err
}

// ErrNotRunning means nobody listens on the control socket.
var ErrNotRunning = errors.New("edged is not running (no control socket)")

// Call sends command to the socket at path and decodes the result into v.
// timeout bounds the whole exchange.
func Call(path, command string, timeout time.Duration, v any) error {
	return CallWith(path, command, nil, timeout, v)
}

// CallWith is Call with args, a value marshalled to a JSON object, sent on
// the command's line (nil: none).
func CallWith(path, command string, args any, timeout time.Duration, v any) error {
	line := command
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return err
		}
		line += " " + string(b)
	}
	if len(line) >= maxLine {
		return fmt.Errorf("control: the %s request is %d bytes, more than the %d the socket reads", command, len(line), maxLine)
	}
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, errConnRefused) {
			return fmt.Errorf("%w: %s", ErrNotRunning, path)
		}
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return err
	}
	// Whatever listens at path answers: bounded, as the request is.
	lr := &io.LimitedReader{R: c, N: maxAnswer + 1}
	var resp Response
	if err := json.NewDecoder(lr).Decode(&resp); err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("reading the answer: the answer is larger than the %d bytes a control answer may have", maxAnswer)
		}
		return fmt.Errorf("reading the answer: %w", err)
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	if v != nil && len(resp.Result) > 0 {
		return json.Unmarshal(resp.Result, v)
	}
	return nil
}
