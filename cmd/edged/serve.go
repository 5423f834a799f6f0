package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"edged/edge"
	"edged/internal/config"
	"edged/internal/control"
	"edged/internal/history"
	"edged/internal/sdnotify"
	"edged/internal/stderrlog"
	"edged/internal/termsafe"
	"edged/internal/watch"
)

func cmdServe(args []string, stdout, stderr io.Writer) (exitErr error) {
	fs, dir := newFlags("serve", "serve -c DIR [--log-format json|text]", stderr)
	logFormat := fs.String("log-format", "json", "log `format` on stderr: json (one event per line) or text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts := stderrlog.Options{Format: *logFormat}
	switch *logFormat {
	case "json":
		// DEL, the C1 controls and Unicode's bidirectional controls as
		// \u escapes: the log names files, whose names are anyone's who
		// may write to a home, and a terminal shows it (journalctl, tail).
		opts.Escape = termsafe.JSON
	case "text":
	default:
		fmt.Fprintf(stderr, "edged serve: -log-format must be json or text\n")
		return errUsage
	}
	// Under systemd, stderr is the journal's stream: each line says its
	// priority, which journald takes from a "<N>" prefix (journalctl -p
	// warning); anywhere else the prefix would be noise in the line.
	if f, ok := stderr.(*os.File); ok {
		opts.Journal = stderrlog.IsJournal(f)
	}
	// What the Go runtime writes to fd 2 itself, a panic nobody
	// recovered, a fatal error, the goroutine dump of SIGABRT (the
	// watchdog's kill), has no priority prefix: under the journal, fd 2
	// becomes a stream of its own whose lines are crit unless they say
	// otherwise, and the log goes on in the stream systemd connected.
	var crashStream error
	if opts.Journal && stderr == io.Writer(os.Stderr) {
		if f, err := stderrlog.CrashesToJournal(filepath.Base(os.Args[0])); err != nil {
			crashStream = err
		} else {
			stderr = f
			stdlog.SetOutput(f) // a library's log.Printf stays as it was
		}
	}
	// One writer goroutine writes the lines: whoever logs (a request, a
	// reload, the signal loop) never waits on a stderr that does not take
	// them (see internal/stderrlog). What is queued is written before
	// edged exits, waiting at most logFlushWait for a stderr that blocks.
	own := stderrlog.New(stderr, opts)
	defer own.Close(logFlushWait)
	log := own.Logger()
	// An error that ends edged is the log's last line, an error like the
	// others: printed after the log by run, it would have no priority
	// under the journal (journald takes such a line as info) and be no
	// JSON.
	defer func() {
		if exitErr != nil && !errors.Is(exitErr, errSilent) {
			log.Error("stopped on an error", "error", exitErr.Error())
			exitErr = errSilent
		}
	}()
	if crashStream != nil {
		log.Info("a crash would reach the journal at info priority: no stream of its own", "error", crashStream.Error())
	}
	// The log's reader (a pipe to a logger, `edged serve 2>&1 | tee`) may
	// go away: a Go program is killed by SIGPIPE when it writes to fd 1 or
	// 2 then. A server loses those lines and keeps serving, like nginx.
	signal.Ignore(syscall.SIGPIPE)
	// SIGHUP and SIGUSR1 are subscribed to before anything else: until
	// then they would end the process (Go's default), and loading,
	// opening the logs and binding take a while; what arrives meanwhile
	// waits for the loop. SIGTERM, SIGINT and SIGQUIT still end a start
	// at once, whatever holds it up, until edged listens (notifyStop
	// below): nothing is served to drain yet.
	sigs := subscribe()
	defer sigs.stopAll()

	loader := &config.Loader{Dir: *dir}
	cfg, err := loader.Load()
	if err != nil {
		return refuseConfig(log, err, *dir)
	}
	edge.LogWarnings(log, cfg.Warnings)
	if testHookStartLoaded != nil {
		testHookStartLoaded()
	}
	if err := checkStateDir(cfg.Server.StateDir); err != nil {
		log.Error("unsafe state_dir", "state_dir", cfg.Server.StateDir, "error", err.Error())
		_ = tellStatus(err.Error())
		return errSilent
	}
	// Without its control socket, `edged reload` (systemctl reload),
	// promote and rollback could never reach this process.
	if err := control.CheckPath(control.Path(cfg.Server.StateDir)); err != nil {
		log.Error("unusable state_dir", "state_dir", cfg.Server.StateDir, "error", err.Error())
		_ = tellStatus(err.Error())
		return errSilent
	}
	// Two processes on one state_dir would number their generations in
	// one history, and `edged reload` would reach one of them whichever
	// directory it names: the second refuses to start, before it records
	// anything or binds a port. The lock, held as long as the process
	// lives, decides between two started at once, which both find no
	// control socket yet; the socket's check still catches a process that
	// could not take the lock (a state_dir it may not write).
	lock, err := lockStateDir(cfg.Server.StateDir)
	switch {
	case errors.Is(err, errStateDirLocked):
		return anotherEdged(log, cfg.Server.StateDir)
	case err != nil:
		log.Warn("cannot lock state_dir: a second edged started on it at the same moment would not be refused", "state_dir", cfg.Server.StateDir, "error", err.Error())
	default:
		defer lock.Close()
	}
	if control.InUse(control.Path(cfg.Server.StateDir)) {
		return anotherEdged(log, cfg.Server.StateDir)
	}
	hist := openHistory(cfg.Server, log)
	hist.resume(*dir)
	srv := edge.NewServer(log)
	srv.ContinueGenerations(hist.lastGeneration())
	hist.auditEnv = srv.AuditEnv
	hist.auditGone = srv.AuditEnvGone
	srv.SetRecentGenerations(hist.recentGenerations)
	if _, _, err := srv.Apply(cfg); err != nil {
		// A file that loaded but cannot be built: a certificate that
		// does not match its key, a log that cannot be opened.
		return refuseConfig(log, err, *dir)
	}
	// From the moment it listens, a stop is a graceful one: the rest of
	// the start (the first generation's record and audit line, synced;
	// the watcher; the control socket) serves requests already, which a
	// SIGTERM then must not cut. It waits for the start to end, then
	// drains, as during a reload; a second one ends the process at once
	// (startHold), as the start may never end.
	sigs.notifyStop()
	if err := srv.Listen(); err != nil {
		// A port taken or not permitted: in edged's log like every other
		// failure, and in the unit's status (systemctl status).
		log.Error("cannot listen", "error", err.Error())
		_ = tellStatus("cannot listen: " + firstLine(err.Error()))
		return errSilent
	}
	d := &daemon{dir: *dir, srv: srv, log: log, hist: hist, loader: loader, sigs: sigs, reloadEnded: make(chan struct{}, 1)}
	return d.run(cfg)
}

// logFlushWait is how long edged, exiting, waits for its own log's
// last lines to be written (see afterDrain).
const logFlushWait = 5 * time.Second

// checkStateDir refuses, for edged serve, a state_dir that another local
// user could change: writable by group or others, or owned by another
// user than this process's and root.
func checkStateDir(stateDir string) error {
	if err := history.CheckStateDir(stateDir); err != nil {
		return err
	}
	return history.CheckStateDirOwner(stateDir, os.Geteuid())
}

// anotherEdged refuses a start on a state_dir another edged uses.
func anotherEdged(log *slog.Logger, stateDir string) error {
	log.Error("another edged uses this state_dir: stop it, or give each its own state_dir", "state_dir", stateDir,
		"control_socket", control.Path(stateDir), "lock", filepath.Join(stateDir, lockName))
	_ = tellStatus("another edged uses state_dir " + stateDir)
	return errSilent
}

// lockName is the lock file in state_dir that edged serve holds (flock)
// for as long as it runs.
const lockName = "edged.lock"

var errStateDirLocked = errors.New("state_dir is locked by another process")

// lockStateDir takes the exclusive lock of state_dir, creating the
// directory (0750, as the history does) and the lock file when missing.
// The kernel drops the lock when the process ends, however it ends: a
// lock file left behind is no obstacle.
func lockStateDir(stateDir string) (*os.File, error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(stateDir, lockName), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errStateDirLocked
		}
		return nil, err
	}
	return f, nil
}

// refuseConfig logs why the configuration cannot start, each error with
// its file and line, tells systemd, and ends the start.
func refuseConfig(log *slog.Logger, err error, dir string) error {
	errs, omitted := edge.FirstErrors(edge.ConfigErrors(err, dir))
	for _, e := range errs {
		log.Error("invalid configuration", "file", e.Pos.File, "line", e.Pos.Line, "error", e.Error())
	}
	if omitted > 0 {
		log.Error("invalid configuration: more errors not logged", "omitted", omitted)
	}
	_ = tellStatus("invalid configuration: " + firstLine(err.Error()))
	return errSilent
}

// daemon is the running process: it owns the watcher, the control socket,
// the history and the signal loop around the server.
type daemon struct {
	dir  string
	srv  *edge.Server
	log  *slog.Logger
	rl   *edge.Reloader
	w    *watch.Watcher
	hist *recorder
	// loader loaded the first config; the reloader goes on with it.
	loader *config.Loader
	sigs   signals
	// reloadMu makes reloads one at a time from the daemon's side too,
	// so that the recorder's origin is the running reload's.
	reloadMu sync.Mutex
	// lastReload is the last reload attempt's record, nil before the
	// first; guarded by reloadMu (the reloader's Done sets it, and every
	// reload runs under reloadMu).
	lastReload *edge.ReloadRecord
	// reloading is set while a reload runs, whoever asked for it (the
	// signal loop, or the control socket's goroutine beside it), and
	// reloadEnded takes a token when one ends: the watchdog's pings wait
	// for a reload under way (see run).
	reloading   atomic.Bool
	reloadEnded chan struct{}

	// ctx is run's: the control sockets' handlers get it.
	ctx context.Context
	// ctlMu guards ctls, the control sockets by path (the one of the
	// state_dir edged started with, and that of each state_dir a reload
	// applied since), and ctlStopped, set when shutdown closes them.
	ctlMu      sync.Mutex
	ctls       map[string]*control.Server
	ctlStopped bool
}

func (d *daemon) run(cfg *config.Config) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.ctx = ctx
	sc := cfg.Server
	w, err := watch.New(watch.Options{
		Dir:      d.dir,
		Extra:    tlsFiles(cfg),
		Debounce: sc.ReloadDebounce.Duration,
		MaxWait:  sc.ReloadMaxWait.Duration,
		Rescan:   sc.RescanInterval.Duration,
		Logger:   d.log,
	})
	if err != nil {
		return fmt.Errorf("watching %s: %w", d.dir, err)
	}
	d.w = w

	hist := d.hist
	applied := tlsFiles(cfg)
	d.rl = &edge.Reloader{
		Dir:    d.dir,
		Server: d.srv,
		Log:    d.log,
		Loader: d.loader,
		OnApplied: func(cfg *config.Config, rec edge.ReloadRecord) {
			if rec.Unchanged {
				hist.unchanged(rec)
				return
			}
			applied = tlsFiles(cfg)
			if err := w.SetExtra(applied); err != nil {
				d.log.Warn("watching certificate directories", "error", err.Error())
			}
			d.followStateDir(cfg.Server.StateDir)
			hist.applied(d.dir, cfg, rec)
		},
		OnFailed: func(attempted *config.Config, rec edge.ReloadRecord) {
			// A failed attempt may name a certificate that is not there
			// yet: watch it too, so that its arrival retries the reload.
			if attempted != nil {
				if err := w.SetExtra(append(tlsFiles(attempted), applied...)); err != nil {
					d.log.Warn("watching certificate directories", "error", err.Error())
				}
			}
			hist.failed(rec)
		},
		EmptiedOnPurpose: func(path string) bool { return hist.announcedEmpty(d.dir, path) },
		Starting: func(string) {
			notifyReloading(d.log)
			if testHookReloadStarted != nil {
				testHookReloadStarted()
			}
		},
		Done: func(rec edge.ReloadRecord) {
			d.lastReload = &rec
			notifyReloaded(d.log, rec)
		},
	}
	hist.setOrigin(origin{cause: history.CauseStartup})
	hist.applied(d.dir, cfg, edge.ReloadRecord{Time: time.Now(), Trigger: "start", OK: true, Generation: d.srv.Snapshot().Generation})
	hist.setOrigin(origin{})

	ctl, err := d.startControl(ctx, sc.StateDir)
	if errors.Is(err, control.ErrInUse) {
		// Started at the same time as another on this state_dir.
		return err
	}
	if err != nil {
		d.log.Warn("control socket unavailable: 'edged reload' will not work", "error", err.Error())
	}
	d.ctlMu.Lock()
	d.ctls = map[string]*control.Server{}
	if ctl != nil {
		d.ctls[control.Path(sc.StateDir)] = ctl
	}
	d.ctlMu.Unlock()
	// Shutting down: no reload may start while the server drains.
	var stopOnce sync.Once
	stopTriggers := func() {
		stopOnce.Do(func() {
			d.ctlMu.Lock()
			d.ctlStopped = true
			ctls := d.ctls
			d.ctlMu.Unlock()
			// Not under ctlMu: Close waits for a reload under way, which
			// may call followStateDir.
			for _, c := range ctls {
				_ = c.Close()
			}
			_ = w.Close()
			d.rl.Stop()
		})
	}
	defer stopTriggers()

	// A file written between the first load and the watcher's start would
	// otherwise go unnoticed until it changes again.
	if changedOnDisk(d.dir, cfg) {
		d.reload("file change during start", origin{cause: history.CauseFileChange})
	}

	d.sigs.started()
	stop, hup, usr1 := d.sigs.stop, d.sigs.hup, d.sigs.usr1
	// Everything is up (listeners, watcher, control socket): say so.
	httpsAddr, plainAddr, adminAddr := d.srv.Addrs()
	d.log.Info("listening", "https", addrString(httpsAddr), "http", addrString(plainAddr), "admin", addrString(adminAddr), "generation", d.srv.Snapshot().Generation)
	if err := d.notifyStarted(); err != nil {
		// systemd (Type=notify) stops the service when TimeoutStartSec
		// runs out without it, and says only that the start timed out.
		d.log.Error("cannot tell systemd READY=1: under Type=notify, it stops edged when TimeoutStartSec runs out", "notify_socket", os.Getenv("NOTIFY_SOCKET"), "error", err.Error())
	}
	// With WatchdogSec= in the unit, systemd kills edged once it has not
	// heard WATCHDOG=1 for that long. The pings come from this loop,
	// between the work it does (reloads, signals), and only while no
	// reload is under way: a loop held up for good (a reload stuck in a
	// read on a file system that hangs, a lock never given back) stops
	// them, and SIGTERM and reloads, which wait for it, would never be
	// acted on either; so does a reload the control socket runs beside
	// the loop (edged reload, systemctl reload), held up for good, after
	// which no reload could run again. A goroutine of their own would
	// tick whatever happened. A tick missed while a reload runs waits in
	// the ticker's channel (the loop's own), or is owed (the control
	// socket's): the ping follows the reload.
	var watchdog <-chan time.Time
	if every := sdnotify.WatchdogInterval() / 2; every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		watchdog = t.C
		d.ping()
	}
	owed := false

	for {
		// A stop waiting beside other work goes first.
		select {
		case sig := <-stop:
			stopTriggers()
			return d.shutdown(sig, stop)
		default:
		}
		select {
		case sig := <-stop:
			stopTriggers()
			return d.shutdown(sig, stop)
		case ev := <-w.Events():
			d.reload(fileTrigger(ev), origin{cause: history.CauseFileChange})
		case <-hup:
			d.reload("SIGHUP", origin{cause: history.CauseSIGHUP})
		case <-watchdog:
			if d.reloading.Load() {
				owed = true
				continue
			}
			d.ping()
		case <-d.reloadEnded:
			if owed && !d.reloading.Load() {
				owed = false
				d.ping()
			}
		case <-usr1:
			if err := d.srv.ReopenLogs(); err != nil {
				d.log.Error("reopening access logs", "error", err.Error())
			} else {
				d.log.Info("access logs reopened")
			}
		case err := <-d.srv.Errors():
			if err != nil {
				d.log.Error("listener failed", "error", err.Error())
				return errSilent
			}
		}
	}
}

// testHookReloadStarted, set by the tests' TestMain only, runs as each
// reload starts, after RELOADING=1: a test holds the signal loop there,
// as a reload stuck for good would.
var testHookReloadStarted func()

// testHookStartLoaded, set by the tests' TestMain only, runs in the start
// once the configuration is loaded and its warnings logged, before the
// listeners: a test holds the start there, as a slow disk or a hung
// mount would, to send signals or change files meanwhile.
var testHookStartLoaded func()

// triggerPaths is how many of an event's paths its reload's trigger
// names. The trigger is in the reload's log lines, /status, the audit log
// and the history, and one event may hold thousands of paths: a directory
// moved into conf.d, or every certificate after lost events.
const triggerPaths = 10

// fileTrigger is the trigger of the reload a watcher event makes.
func fileTrigger(ev watch.Event) string {
	trigger := "file change"
	if ev.Rescan {
		trigger = "rescan"
	}
	paths := ev.Paths
	if len(paths) == 0 {
		return trigger
	}
	more := len(paths) - triggerPaths
	if more > 0 {
		paths = paths[:triggerPaths]
	}
	trigger += ": " + strings.Join(paths, ", ")
	if more > 0 {
		trigger += fmt.Sprintf(" and %d more", more)
	}
	return trigger
}

// signals are the channels of the signals edged serve acts on. os/signal
// drops a signal whose channel is full, so each kind has its own: a burst
// of SIGHUPs during a reload must not crowd out the SIGTERM after it. One
// pending SIGHUP is enough: the reload it makes reads every file, whatever
// the others were sent for.
type signals struct {
	stop, hup, usr1 chan os.Signal
	// quit takes SIGQUIT for the process's life, never Go's default (a
	// dump of every goroutine, exit 2): until notifyStop a start ends on
	// it as on SIGTERM; from then on it is a stop signal like SIGTERM.
	quit chan os.Signal
	// stopping is set by notifyStop: SIGQUIT goes to stop from then on.
	stopping *atomic.Bool
	// held watches the stop signals from notifyStop until the start is
	// over (started): see startHold and notifyStop.
	held *startHold
}

// startHold is the watch on the stop signals while the start goes on
// after edged listens. The first is kept for the signal loop (a graceful
// stop once the start is over); a second ends the process at once, as
// another signal ends a drain: the start may be held up for good (an
// audit log on a file system that hangs), and the operator who sends it
// again wants the process gone, not a SIGKILL to be the only way.
type startHold struct {
	end  sync.Once
	over chan struct{} // closed by started (or stopAll)
	done chan struct{} // closed once the watch gave the kept signal back
}

// subscribe subscribes to SIGHUP and SIGUSR1; notifyStop, just before
// edged listens, to SIGTERM, SIGINT and SIGQUIT: until then there is
// nothing to drain, and they end the start at once.
func subscribe() signals {
	s := signals{stop: make(chan os.Signal, 2), hup: make(chan os.Signal, 1), usr1: make(chan os.Signal, 1), quit: make(chan os.Signal, 1),
		stopping: new(atomic.Bool), held: &startHold{over: make(chan struct{}), done: make(chan struct{})}}
	signal.Notify(s.hup, syscall.SIGHUP)
	signal.Notify(s.usr1, syscall.SIGUSR1)
	signal.Notify(s.quit, syscall.SIGQUIT)
	go func() {
		// One subscriber for SIGQUIT at every moment, so that one signal
		// is never taken twice. Until notifyStop, SIGTERM's default ends
		// the start; from then on SIGQUIT is a stop signal, passed on as
		// os/signal would (dropped when stop is full: stops wait there
		// already). Ends when stopAll closes quit.
		for sig := range s.quit {
			if !s.stopping.Load() {
				_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
				continue
			}
			select {
			case s.stop <- sig:
			default:
			}
		}
	}()
	return s
}

// notifyStop subscribes to the signals that stop edged gracefully.
// SIGQUIT too: nginx's graceful stop (`nginx -s quit`), which an operator
// may send out of habit; Go's default dumps the goroutines and exits 2,
// cutting what is in flight. SIGABRT still dumps them.
func (s signals) notifyStop() {
	// SIGTERM first: a SIGQUIT that the quit goroutine still passes on
	// as SIGTERM arrives here then.
	signal.Notify(s.stop, syscall.SIGTERM, syscall.SIGINT)
	s.stopping.Store(true)
	h := s.held
	go func() {
		defer close(h.done)
		var kept os.Signal
		select {
		case kept = <-s.stop:
		case <-h.over:
			return
		}
		select {
		case <-s.stop:
			// Gone at once, as a stop before edged listens: SIGTERM's
			// default, whichever of the three was sent.
			signal.Reset(syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		case <-h.over:
			select {
			case s.stop <- kept:
			default: // full: stops wait there already
			}
		}
	}()
}

// started ends the watch of notifyStop: the start is over, and a stop
// signal it kept waits in s.stop for the signal loop.
func (s signals) started() {
	s.held.end.Do(func() { close(s.held.over) })
	<-s.held.done
}

func (s signals) stopAll() {
	// The start's watch, when it did not reach the signal loop (a
	// failure after listening): it ends with cmdServe.
	s.held.end.Do(func() { close(s.held.over) })
	signal.Stop(s.quit)
	close(s.quit) // nothing is sent on it once Stop returned
	signal.Stop(s.stop)
	signal.Stop(s.hup)
	signal.Stop(s.usr1)
}

// followStateDir listens on the control socket of stateDir too, once a
// reload applied files naming another state_dir than those edged listens
// in: `edged reload -c DIR` (and systemctl reload) looks for the socket
// where DIR's files say, like `nginx -s reload` reads the pid file where
// nginx.conf says and a reloaded nginx writes it there. The history and
// the audit log move at the next restart (the reload warned so).
func (d *daemon) followStateDir(stateDir string) {
	path := control.Path(stateDir)
	d.ctlMu.Lock()
	defer d.ctlMu.Unlock()
	if d.ctlStopped || d.ctls[path] != nil {
		return
	}
	if err := checkStateDir(stateDir); err != nil {
		d.log.Warn("no control socket in the new state_dir", "state_dir", stateDir, "error", err.Error())
		return
	}
	ctl, err := d.startControl(d.ctx, stateDir)
	if err != nil {
		d.log.Warn("no control socket in the new state_dir", "state_dir", stateDir, "error", err.Error())
		return
	}
	d.ctls[path] = ctl
	d.log.Info("control socket of the new state_dir", "path", path)
}

// shutdown first plays lame duck for shutdown_delay: /readyz answers 503
// while every listener still serves, so that a load balancer takes the
// instance out before its connections are refused. A second SIGTERM or
// SIGINT ends the delay early. Then it stops accepting and drains
// in-flight requests for at most drain_timeout; another signal ends the
// drain too (whoever sends it again wants the process gone now).
func (d *daemon) shutdown(sig os.Signal, stop <-chan os.Signal) error {
	sc := d.srv.Snapshot().Plan.Config.Server
	d.log.Info("shutting down", "signal", sig.String(), "shutdown_delay", sc.ShutdownDelay.String(), "drain_timeout", sc.DrainTimeout.String())
	if sc.ShutdownDelay.Duration > 0 {
		d.srv.NotReady()
	}
	// systemd kills the process TimeoutStopSec= after its SIGTERM, in the
	// middle of a drain that drain_timeout allows: ask for the time the
	// stop may take. Sent once /readyz answers 503: a notify socket that
	// makes it wait does not hold the lame duck back.
	logNotifyFailure(d.log, "STOPPING=1", sdnotify.Stopping(sc.ShutdownDelay.Duration+sc.DrainTimeout.Duration+afterDrain))
	if sc.ShutdownDelay.Duration > 0 {
		t := time.NewTimer(sc.ShutdownDelay.Duration)
		select {
		case <-t.C:
		case s := <-stop:
			d.log.Info("shutdown delay cut short", "signal", s.String())
			t.Stop()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), sc.DrainTimeout.Duration)
	defer cancel()
	go func() {
		select {
		case s := <-stop:
			d.log.Info("drain cut short", "signal", s.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := d.srv.Shutdown(ctx); err != nil {
		d.log.Warn("drain incomplete", "error", err.Error())
	}
	d.log.Info("stopped")
	return nil
}

// afterDrain is what the stop may take once drain_timeout has passed, in
// what edged asks systemd for: the requests the drain's end cut answered
// (a second at most), the lines of the tunnels it cut logged (5 s), a
// log's last write (5 s), with room to spare.
const afterDrain = 15 * time.Second

// tlsFiles lists the certificate, key and client CA files the virtual
// hosts name, and the upstreams' CA bundles and client certificates and
// keys, for the watcher.
func tlsFiles(cfg *config.Config) []string {
	var files []string
	add := func(f string) {
		if f != "" {
			abs, err := filepath.Abs(f)
			if err == nil {
				f = abs
			}
			files = append(files, f)
		}
	}
	for _, vh := range cfg.VirtualHosts {
		add(vh.CertFile)
		add(vh.KeyFile)
		add(vh.ClientCAFile)
	}
	// From the upstreams rather than the bundles read: a failed load
	// names a bundle not there yet, whose arrival must retry it.
	seen := make(map[string]bool)
	for _, u := range cfg.Upstreams {
		for _, f := range []string{u.TLSCAFile, u.TLSCertFile, u.TLSKeyFile} {
			if !seen[f] {
				seen[f] = true
				add(f)
			}
		}
	}
	return files
}

// changedOnDisk reports whether the config files in dir, or the
// certificate, key and client CA files its virtual hosts name, are no
// longer those cfg was loaded from. The watcher's rescan compares with
// what it found when it started, so a change made before then would never
// be reloaded.
func changedOnDisk(dir string, cfg *config.Config) bool {
	paths, err := config.Files(dir)
	if err != nil || len(paths) != len(cfg.Files) {
		return true
	}
	for i, p := range paths {
		b, err := config.ReadFile(p)
		if err != nil || p != cfg.Files[i].Path {
			return true
		}
		if config.SHA256Hex(b) != cfg.Files[i].SHA256 {
			return true
		}
	}
	return cfg.TLSChangedOnDisk()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func addrString(a interface{ String() string }) string {
	if a == nil {
		return ""
	}
	return a.String()
}
