package edge

import (
	"bytes"
	"crypto"
	"errors"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	"edged/internal/config"
)

// Reloader loads a configuration directory and applies it to a server,
// one attempt at a time, whatever triggered it (file change, SIGHUP, the
// control socket). A failed attempt changes nothing that serves.
type Reloader struct {
	Dir    string
	Server *Server
	Log    *slog.Logger
	// OnApplied, when set, is called after a successful apply with the
	// loaded config and the record (history, audit log, watch targets);
	// also after a reload that found nothing changed, with rec.Unchanged
	// and the serving config.
	OnApplied func(cfg *config.Config, rec ReloadRecord)
	// OnFailed, when set, is called after a failed attempt with what was
	// loaded (nil when nothing could be; else incomplete: do not serve it)
	// and the record.
	OnFailed func(attempted *config.Config, rec ReloadRecord)
	// Loader loads Dir; it keeps what it decoded, so a reload decodes only
	// the files that changed. Made from Dir when nil.
	Loader *config.Loader
	// Starting, when set, is called as an attempt begins, before anything
	// is loaded; Done, when set, after it ended and the server recorded
	// it (edged serve tells systemd through them). Neither is called for
	// an attempt refused because the Reloader is stopped.
	Starting func(trigger string)
	Done     func(rec ReloadRecord)
	// EmptiedOnPurpose, when set, reports whether the config file at
	// path, which had content in the serving config and is empty now,
	// was emptied on purpose: edged rollback restoring a generation
	// that served it empty, announced before it wrote. Such a file is not
	// taken as half written (see emptiedFiles).
	EmptiedOnPurpose func(path string) bool

	mu      sync.Mutex
	stopped bool
}

// Stop waits for an attempt in progress and makes every later one fail:
// a process shutting down must not build environments it would leak.
func (rl *Reloader) Stop() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.stopped = true
}

// Reload runs one attempt and returns its record.
func (rl *Reloader) Reload(trigger string) ReloadRecord {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.stopped {
		rec := ReloadRecord{Time: time.Now(), Trigger: trigger, Errors: []config.Error{{Pos: config.Pos{File: rl.Dir}, Msg: "edged is shutting down"}}}
		if snap := rl.Server.Snapshot(); snap != nil {
			rec.Generation = snap.Generation
		}
		return rec
	}
	if rl.Starting != nil {
		rl.Starting(trigger)
	}
	rec := rl.reload(trigger)
	rl.Server.RecordReload(rec)
	if rl.Done != nil {
		rl.Done(rec)
	}
	return rec
}

func (rl *Reloader) reload(trigger string) ReloadRecord {
	start := time.Now()
	rec := ReloadRecord{Time: start, Trigger: trigger}
	if rl.Loader == nil || rl.Loader.Dir != rl.Dir {
		rl.Loader = &config.Loader{Dir: rl.Dir}
	}
	cfg, err := rl.Loader.Load()
	if prev := rl.Server.Snapshot(); prev != nil && err == nil {
		if errs := emptiedFiles(prev.Plan.Config.Files, cfg.Files, rl.EmptiedOnPurpose); len(errs) > 0 {
			err = errs
		}
	}
	if err != nil {
		return rl.failed(rec, cfg, err)
	}
	LogWarnings(rl.Log, cfg.Warnings)
	if prev := rl.Server.Snapshot(); prev != nil && sameInputs(prev.Plan.Config, cfg) {
		// Nothing to build: a new generation would only push a real one
		// out of the history (history_keep) for nothing to roll back to.
		rec.OK, rec.Unchanged, rec.Generation = true, true, prev.Generation
		lastReloadSuccess.Store(time.Now().Unix())
		rl.Log.Info("config unchanged", "trigger", trigger, "generation", prev.Generation)
		if rl.OnApplied != nil {
			rl.OnApplied(prev.Plan.Config, rec)
		}
		return rec
	}
	snap, ch, err := rl.Server.Apply(cfg)
	if err != nil {
		return rl.failed(rec, cfg, err)
	}
	rec.OK, rec.Generation, rec.Change = true, snap.Generation, &ch
	rl.Log.Info("config applied", "trigger", trigger, "generation", snap.Generation,
		"added", ch.Added, "changed", ch.Changed, "removed", ch.Removed, "kept", len(ch.Kept),
		"took_ms", time.Since(start).Milliseconds())
	if rl.OnApplied != nil {
		rl.OnApplied(cfg, rec)
	}
	return rec
}

// failed ends an attempt that err stopped: logged with file and line,
// counted, and nothing that serves changed.
func (rl *Reloader) failed(rec ReloadRecord, attempted *config.Config, err error) ReloadRecord {
	rec.Errors, rec.ErrorsOmitted = FirstErrors(ConfigErrors(err, rl.Dir))
	for _, e := range rec.Errors {
		rl.Log.Error("reload failed", "trigger", rec.Trigger, "file", e.Pos.File, "line", e.Pos.Line, "error", e.Error())
	}
	if rec.ErrorsOmitted > 0 {
		rl.Log.Error("reload failed: more errors not logged", "trigger", rec.Trigger, "omitted", rec.ErrorsOmitted)
	}
	if snap := rl.Server.Snapshot(); snap != nil {
		rec.Generation = snap.Generation
	}
	if rl.OnFailed != nil {
		rl.OnFailed(attempted, rec)
	}
	return rec
}

// LogWarnings logs the first maxReportedErrors warnings of a load, each
// cut by ClipError, then how many more there were. As a refused reload's
// errors, their number is the configuration's (each IP address among an
// env group's hostnames is one: 140,000 in a 2 MB file), and every start
// and every reload logs them again: all of them made tens of megabytes
// of log each time, past journald's rate limit, which then drops what
// follows. edged check prints them all.
func LogWarnings(log *slog.Logger, warnings []config.Error) {
	kept, omitted := FirstErrors(warnings)
	for _, w := range kept {
		log.Warn("config warning", "file", w.Pos.File, "line", w.Pos.Line, "warning", w.Error())
	}
	if omitted > 0 {
		log.Warn("config warnings: more not logged", "omitted", omitted)
	}
}

// sameInputs reports whether next was loaded from exactly what serving was:
// the same config files with the same content (SHA-256), for every
// virtual host the same certificate chain, private key and client CAs, and
// the same upstream CA bundles and client certificates.
// Everything else a config holds is decoded from those files.
func sameInputs(serving, next *config.Config) bool {
	if len(serving.Files) != len(next.Files) || len(serving.VirtualHosts) != len(next.VirtualHosts) {
		return false
	}
	for i, f := range serving.Files {
		if f.Path != next.Files[i].Path || f.SHA256 != next.Files[i].SHA256 {
			return false
		}
	}
	for i, vh := range serving.VirtualHosts {
		if !sameTLS(vh, next.VirtualHosts[i]) {
			return false
		}
	}
	return maps.EqualFunc(serving.UpstreamCAs, next.UpstreamCAs, func(a, b *config.CABundle) bool { return a.SHA256 == b.SHA256 }) &&
		maps.EqualFunc(serving.UpstreamCerts, next.UpstreamCerts, func(a, b *config.ClientCert) bool { return a.SHA256 == b.SHA256 })
}

// sameTLS compares what was loaded from the certificate, key and client CA
// files of two virtual hosts (same files: the config files are the same).
func sameTLS(a, b *config.VirtualHost) bool {
	ca, cb := a.Certificate.Certificate, b.Certificate.Certificate
	if a.Name != b.Name || len(ca) != len(cb) {
		return false
	}
	for i := range ca {
		if !bytes.Equal(ca[i], cb[i]) {
			return false
		}
	}
	// Every private key type of the standard library has Equal; a key
	// without it counts as changed.
	type equaler interface{ Equal(crypto.PrivateKey) bool }
	if ka, ok := a.Certificate.PrivateKey.(equaler); !ok || !ka.Equal(b.Certificate.PrivateKey) {
		return false
	}
	if (a.ClientCAs == nil) != (b.ClientCAs == nil) {
		return false
	}
	return a.ClientCAs == nil || a.ClientCAs.Equal(b.ClientCAs)
}

// emptiedFiles reports the files that had content in the serving config
// and are empty now. Writing a file in place truncates it first, so an
// empty file is most likely half written: applying it would remove every
// object it held. The writer's next event retries; to remove the objects
// of a file, delete it. A file onPurpose (nil: none) says was emptied on
// purpose is not reported.
func emptiedFiles(serving, loaded []config.File, onPurpose func(string) bool) config.Errors {
	had := make(map[string]bool, len(serving))
	for _, f := range serving {
		had[f.Path] = f.Size > 0
	}
	var errs config.Errors
	for _, f := range loaded {
		if f.Size == 0 && had[f.Path] && (onPurpose == nil || !onPurpose(f.Path)) {
			errs = append(errs, config.Error{Pos: config.Pos{File: f.Path},
				Msg: "the file is empty now: taken as half written, so its objects keep serving (delete the file to remove them)"})
		}
	}
	return errs
}

// ConfigErrors turns a load or apply error into config errors; an error
// without a position is pinned to the directory.
func ConfigErrors(err error, dir string) []config.Error {
	var errs config.Errors
	if errors.As(err, &errs) {
		out := append([]config.Error(nil), errs...)
		sort.SliceStable(out, func(i, j int) bool {
			if out[i].Pos.File != out[j].Pos.File {
				return out[i].Pos.File < out[j].Pos.File
			}
			return out[i].Pos.Line < out[j].Pos.Line
		})
		return out
	}
	return []config.Error{{Pos: config.Pos{File: dir}, Msg: err.Error()}}
}
