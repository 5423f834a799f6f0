package edge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/asnobody"
	"edged/internal/config"
)

// An environment's access_log path is its operators' to set (the
// environment is declared in its home), but state_dir is edged's alone:
// an access log there would have edged append a line per request, what
// clients send, to the trail of who changed what (audit.log), another
// environment's audit log, or a generation's record or content in the
// history, which edged rollback would then refuse as damaged. A path
// naming one of them, straight or through a symlink in the
// environment's home, fails the environment's build and leaves the file
// as it was.
func TestAccessLogCannotBeAFileOfTheStateDir(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	stateDir := t.TempDir()
	for _, dir := range []string{"audit", "history"} {
		require.NoError(t, os.Mkdir(filepath.Join(stateDir, dir), 0o750))
	}
	own := map[string]string{
		"audit.log":           "{\"event\":\"reload\"}\n",
		"audit/other.log":     "{\"event\":\"config\"}\n",
		"history/000001.json": "{\"generation\":1}\n",
	}
	for name, content := range own {
		require.NoError(t, os.WriteFile(filepath.Join(stateDir, name), []byte(content), 0o640))
	}
	for _, tc := range []struct{ name, path string }{
		{"audit.log", filepath.Join(stateDir, "audit.log")},
		{"another environment's audit log", filepath.Join(stateDir, "audit", "other.log")},
		{"a new file in the audit directory", filepath.Join(stateDir, "audit", "new.log")},
		{"a history record", filepath.Join(stateDir, "history", "000001.json")},
		{"not cleaned", stateDir + "/history/../audit.log"},
		{"through a symlink in the home", "state/audit.log"},
		{"a symlink to the file", "trail.log"},
		{"a dangling symlink with .. after a symlink", "new.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.Symlink(stateDir, filepath.Join(dir, "state")))
			require.NoError(t, os.Symlink(filepath.Join(stateDir, "audit.log"), filepath.Join(dir, "trail.log")))
			// The kernel follows hist before its "..": hist/../audit is
			// state_dir/audit, not the home's audit.
			require.NoError(t, os.Symlink(filepath.Join(stateDir, "history"), filepath.Join(dir, "hist")))
			require.NoError(t, os.Symlink("hist/../audit/new.log", filepath.Join(dir, "new.log")))
			writeFiles(t, dir, map[string]string{
				"server.toml": serverTOML(stateDir, ""),
				"a.toml": envTOML("sd", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(tc.path)+"\"\n") +
					groupTOML("sd", "sd", "test.acme.com", "test.acme.com") + proxyTOML("sd", "api", "/api", b.addr),
			})
			cfg, err := config.Load(dir)
			require.NoError(t, err)
			srv := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
			_, _, err = srv.Apply(cfg)
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}
			if assert.Error(t, err, "an access log in state_dir is refused") {
				assert.Contains(t, err.Error(), `environment "sd": access_log`)
				assert.Contains(t, err.Error(), "state_dir")
			}
			for name, content := range own {
				got, err := os.ReadFile(filepath.Join(stateDir, name))
				require.NoError(t, err)
				assert.Equal(t, content, string(got), "%s is as it was", name)
			}
			_, err = os.Stat(filepath.Join(stateDir, "audit", "new.log"))
			assert.True(t, os.IsNotExist(err), "no file made in the state_dir")
		})
	}
}

// SIGUSR1 opens the access log's path again: a path that led to a file
// of the environment's operators when the environment was built, and
// leads into state_dir by then (its directory swapped for a symlink), is
// not opened; the log goes on in the file it had.
func TestReopenDoesNotFollowAnAccessLogIntoTheStateDir(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	stateDir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(stateDir, "history"), 0o750))
	home := t.TempDir()
	logs := filepath.Join(home, "logs")
	require.NoError(t, os.Mkdir(logs, 0o755))
	access := filepath.Join(logs, "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(stateDir, ""),
		"a.toml": envTOML("sd", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(access)+"\"\n") +
			groupTOML("sd", "sd", "test.acme.com", "test.acme.com") + proxyTOML("sd", "api", "/api", b.addr),
	})
	resp, _ := te.get("test.acme.com", "/api/1")
	require.Equal(t, 200, resp.StatusCode)

	require.NoError(t, os.Rename(logs, logs+".1"))
	require.NoError(t, os.Symlink(filepath.Join(stateDir, "history"), logs))
	err := te.srv.ReopenLogs()
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), "state_dir")
	}
	resp, _ = te.get("test.acme.com", "/api/2")
	require.Equal(t, 200, resp.StatusCode)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // flushes and closes the logs

	_, err = os.Stat(filepath.Join(stateDir, "history", "access.log"))
	assert.True(t, os.IsNotExist(err), "no access log made in state_dir/history")
	assert.Len(t, readJSONLines(t, filepath.Join(logs+".1", "access.log")), 2, "both lines in the file the log had")
}

// The check of an access log's path and its open are one step: a link on
// the path turned between them (the home's operators flipping it from
// their own directory to state_dir's audit directory, again and again,
// while SIGUSR1 reopens the log) never has edged open a file of
// state_dir. Each reopen is followed by a request, whose line goes to
// whichever file the reopen got.
func TestAccessLogPathTurnedWhileOpenedNeverReachesTheStateDir(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	stateDir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(stateDir, "audit"), 0o750))
	other := filepath.Join(stateDir, "audit", "other.log")
	const trail = "{\"event\":\"config\"}\n"
	require.NoError(t, os.WriteFile(other, []byte(trail), 0o640))
	home := t.TempDir()
	own := filepath.Join(home, "own")
	require.NoError(t, os.Mkdir(own, 0o755))
	logs := filepath.Join(home, "logs")
	require.NoError(t, os.Symlink(own, logs))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(stateDir, ""),
		"a.toml": envTOML("sd", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(filepath.Join(logs, "other.log"))+"\"\n") +
			groupTOML("sd", "sd", "test.acme.com", "test.acme.com") + proxyTOML("sd", "api", "/api", b.addr),
	})

	// Flip logs between the two directories, each time by renaming a new
	// link over it (atomic: the path always leads somewhere).
	stop := make(chan struct{})
	flipped := make(chan int)
	go func() {
		n := 0
		defer func() { flipped <- n }()
		tmp := filepath.Join(home, "logs.new")
		for ; ; n++ {
			select {
			case <-stop:
				_ = os.Remove(tmp)
				_ = os.Remove(logs)
				_ = os.Symlink(own, logs)
				return
			default:
			}
			target := own
			if n%2 == 0 {
				target = filepath.Join(stateDir, "audit")
			}
			_ = os.Remove(tmp)
			if os.Symlink(target, tmp) == nil {
				_ = os.Rename(tmp, logs)
			}
		}
	}()
	refused := 0
	for i := 0; i < 300; i++ {
		if te.srv.ReopenLogs() != nil {
			refused++
		}
		resp, _ := te.get("test.acme.com", "/api/1")
		require.Equal(t, 200, resp.StatusCode)
	}
	close(stop)
	t.Logf("%d flips, %d of 300 reopens refused", <-flipped, refused)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // flushes and closes the logs

	got, err := os.ReadFile(other)
	require.NoError(t, err)
	assert.Equal(t, 0, strings.Count(strings.TrimPrefix(string(got), trail), "\n"), "access lines in another environment's audit log")
	assert.True(t, strings.HasPrefix(string(got), trail), "its line kept")
	assert.Positive(t, refused, "the flips were seen")
	assert.NotEmpty(t, readJSONLines(t, filepath.Join(own, "other.log")), "the lines went to the home's file")
}

// The last name of an access log's path may be a link the kernel alone
// can follow: /dev/stdout, or a /proc link to a pipe (a log shipper's, as
// a container runtime hands it), whose target names no file
// ("pipe:[123]"). The log is opened through it and its lines reach the
// pipe.
func TestAccessLogThroughAProcLinkToAPipe(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	home := t.TempDir()
	link := filepath.Join(home, "access.log")
	require.NoError(t, os.Symlink("/proc/self/fd/"+strconv.Itoa(int(w.Fd())), link))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"a.toml": envTOML("sd", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(link)+"\"\n") +
			groupTOML("sd", "sd", "test.acme.com", "test.acme.com") + proxyTOML("sd", "api", "/api", b.addr),
	})
	resp, _ := te.get("test.acme.com", "/api/1")
	require.Equal(t, 200, resp.StatusCode)
	require.NoError(t, r.SetReadDeadline(time.Now().Add(5*time.Second)))
	line, err := bufio.NewReader(r).ReadString('\n')
	require.NoError(t, err)
	assert.Contains(t, line, `"uri":"/api/1"`)
}

// Opening a file takes search permission on its directory, not read: an
// operator may put the service's access log in a directory the service
// can enter but not list (a home made 0711, the log made for the
// service in it), as nginx and the open by name before did. The
// directory the check is made through is opened for its path alone, so
// the log opens there as it always did.
func TestAccessLogInADirectoryTheServiceCannotList(t *testing.T) {
	if path := os.Getenv("EDGED_TEST_OPEN_LOG"); path != "" {
		f, err := openLogFile(path, logPlace{stateDir: os.Getenv("EDGED_TEST_OPEN_LOG_STATE")})
		require.NoError(t, err)
		f.Close()
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("the open through /proc is Linux's")
	}
	base := asnobody.Dir(t, 0o755)
	state := filepath.Join(base, "state")
	require.NoError(t, os.Mkdir(state, 0o755))
	home := filepath.Join(base, "home")
	require.NoError(t, os.Mkdir(home, 0o711))
	require.NoError(t, os.Chmod(home, 0o711))
	log := filepath.Join(home, "access.log")
	require.NoError(t, os.WriteFile(log, nil, 0o640))
	require.NoError(t, os.Chown(log, 65534, 65534))
	asnobody.Run(t, base, "TestAccessLogInADirectoryTheServiceCannotList", "EDGED_TEST_OPEN_LOG="+log, "EDGED_TEST_OPEN_LOG_STATE="+state)
}

// [server] access_log_dir bounds the environments' access logs where the
// open finds the file, not only where the load found the path: a home's
// operators who turn a directory on their log's path into a link leading
// out of access_log_dir (to a shell's start-up file, which a root-run
// edged would append requests to) have SIGUSR1's reopen refused, the log
// going on in the file it had, and nothing written where the link leads.
func TestReopenDoesNotFollowAnAccessLogOutOfAccessLogDir(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	logDir := t.TempDir()
	logs := filepath.Join(logDir, "uat")
	require.NoError(t, os.Mkdir(logs, 0o755))
	victim := t.TempDir()
	const rc = "# a shell's start-up file\n"
	require.NoError(t, os.WriteFile(filepath.Join(victim, "access.log"), []byte(rc), 0o644))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), fmt.Sprintf("access_log_dir = %q", logDir)),
		"a.toml": envTOML("sd", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(filepath.Join(logs, "access.log"))+"\"\n") +
			groupTOML("sd", "sd", "test.acme.com", "test.acme.com") + proxyTOML("sd", "api", "/api", b.addr),
	})
	resp, _ := te.get("test.acme.com", "/api/1")
	require.Equal(t, 200, resp.StatusCode)

	require.NoError(t, os.Rename(logs, logs+".1"))
	require.NoError(t, os.Symlink(victim, logs))
	err := te.srv.ReopenLogs()
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), "is outside [server] access_log_dir "+logDir)
		assert.Contains(t, err.Error(), "(it leads to "+filepath.Join(victim, "access.log")+")")
	}
	resp, _ = te.get("test.acme.com", "/api/2")
	require.Equal(t, 200, resp.StatusCode)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // flushes and closes the logs

	got, err := os.ReadFile(filepath.Join(victim, "access.log"))
	require.NoError(t, err)
	assert.Equal(t, rc, string(got), "nothing appended where the link leads")
	assert.Len(t, readJSONLines(t, filepath.Join(logs+".1", "access.log")), 2, "both lines in the file the log had")
}
