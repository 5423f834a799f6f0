package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"edged/edge"
	"edged/internal/config"
	"edged/internal/control"
	"edged/internal/history"
	"edged/internal/termsafe"
)

// recorder writes the history and the audit log of the running process,
// and says for each generation why it was made and by whom.
type recorder struct {
	store *history.Store // nil when state_dir is unusable
	log   *slog.Logger
	mu    sync.Mutex
	track history.Tracker // follows the applied configs
	// auditEnv appends a line to an environment's own audit log (rules.audit_log).
	auditEnv func(env string, line []byte)
	// auditGone appends a line to the audit log of an environment that
	// the last generation audited and this one does not (removed, or its
	// audit_log turned off).
	auditGone func(env string, line []byte)
	// audited are the environments the last generation audited, with the
	// files (relative to dir) that held their objects.
	audited map[string]map[string]bool

	// prev holds the files of the last generation (path → SHA-256), to
	// tell which files the next one changed; nil before the first one
	// when the history has none.
	prev map[string]string
	// origin is why the reload under way runs (see daemon.reload).
	origin origin
	// claims are the changes commands announced before writing files;
	// claimBytes is what their files take (claim.size), within
	// maxClaimBytes.
	claims     map[uint64]*claim
	claimID    uint64
	claimBytes int
	// recent are the last applied generations, newest first, for the
	// status page: kept here so that /status reads no file. recentMu, not
	// mu, guards them: mu is held while a generation is saved (fsync),
	// and /status must not wait for that.
	recentMu sync.Mutex
	recent   []edge.GenerationSummary
}

// recentKept is how many generations the status page lists, and
// changesShown how many changes of each (a first start adds everything).
const (
	recentKept   = 10
	changesShown = 12
)

// summary is a generation as the status page lists it: its cause, and who
// asked for it when a command did.
func summary(gen uint64, t time.Time, cause, user string, changes []history.Change) edge.GenerationSummary {
	if user != "" {
		cause += " by " + user
	}
	s := edge.GenerationSummary{Generation: gen, Time: t, Trigger: cause}
	for i, c := range changes {
		if i == changesShown {
			s.Changes = append(s.Changes, fmt.Sprintf("and %d more (edged history)", len(changes)-i))
			break
		}
		what := c.Action + " " + c.Kind
		if c.Name != c.Kind { // [server] is named after its kind
			what += " " + c.Name
		}
		if c.Env != "" && c.Env != c.Name {
			what += " (" + c.Env + ")"
		}
		s.Changes = append(s.Changes, what)
	}
	return s
}

// remember puts a generation first in the status page's list.
func (r *recorder) remember(g edge.GenerationSummary) {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	r.recent = append([]edge.GenerationSummary{g}, r.recent...)
	if len(r.recent) > recentKept {
		r.recent = r.recent[:recentKept]
	}
}

// recentGenerations returns the last applied generations, newest first.
func (r *recorder) recentGenerations() []edge.GenerationSummary {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	return append([]edge.GenerationSummary(nil), r.recent...)
}

// origin is why a reload runs and who asked for it.
type origin struct {
	cause string // a history.Cause* constant
	user  string // "" unless asked through the control socket
	claim uint64 // the announcement this reload completes, 0 for none
}

// claim is a change a command (promote, rollback) announced before writing
// its files. The watcher may see the files and reload before the command
// asks for its own reload; a generation whose changed files are all ones
// the claim announced, with the content announced, is the command's. A
// hand edit made meanwhile to another file (or to the same file, with
// other content) does not match: it stays a file change.
type claim struct {
	cause, user string
	files       map[string]string // relative path → SHA-256 after the write, "" = moved away
	expires     time.Time
	generation  uint64 // the last generation attributed to it
	size        int    // bytes its files take, as announce counts them
}

// Bounds of the announcements held at once. Each holds up to a control
// line (1 MiB) of file names for up to maxClaimTTL, and a reload's
// attribution goes through every live one: without them any client of the
// control socket could grow edged's memory without end. One promote or
// rollback runs at a time on a directory (they lock it); a burst of them
// with --no-wait holds one each until its --timeout.
const (
	maxClaims     = 256
	maxClaimBytes = 32 << 20
)

func openHistory(sc config.Server, log *slog.Logger) *recorder {
	st, err := history.Open(sc.StateDir, sc.HistoryKeep)
	if err != nil {
		log.Warn("history disabled: state_dir is not writable", "state_dir", sc.StateDir, "error", err.Error())
	}
	// Announcements are numbered from a random start: a command holding
	// the number an earlier process gave it must not find, in a
	// restarted one, another command's announcement under it.
	r := &recorder{store: st, log: log, claims: map[uint64]*claim{}, claimID: rand.Uint64N(1 << 52)}
	if st != nil {
		// The first generation of this run then lists the files that
		// changed while edged was stopped.
		if last, err := st.Last(); err == nil && last > 0 {
			if rec, err := st.Meta(last); err == nil {
				r.prev = history.Sums(rec.Files)
			}
			// Earlier runs' generations for the status page, oldest
			// first; a number missing from the history is skipped.
			var found []*history.Record
			for g := last; g > 0 && g+4*recentKept > last && len(found) < recentKept; g-- {
				if rec, err := st.Meta(g); err == nil {
					found = append(found, rec)
				}
			}
			for i := len(found) - 1; i >= 0; i-- {
				f := found[i]
				r.remember(summary(f.Generation, f.Time, history.CauseOf(f), f.User, f.Changes))
			}
		}
	}
	return r
}

// resume takes up where the last generation recorded left off: the
// tracker and the audited environments start from its config, loaded from
// the files the history stored (TLS material as it is on disk now). The
// first generation of this run then lists what changed while edged was
// stopped, as a reload would have, and an audited environment removed
// meanwhile (or whose audit_log was turned off) gets that change as its
// audit log's last line. When the history has no generation, or its last
// one no longer loads (a content lost, a certificate it named gone), the
// first generation adds everything.
func (r *recorder) resume(dir string) {
	if r.store == nil {
		return
	}
	last, err := r.store.Last()
	if err != nil || last == 0 {
		return
	}
	rec, err := r.store.Get(last)
	if err != nil {
		r.log.Warn("history: the last generation cannot be read: this start's generation lists everything as added", "generation", last, "error", err.Error())
		return
	}
	files := make(map[string][]byte, len(rec.Files))
	for _, f := range rec.Files {
		files[filepath.Join(dir, filepath.FromSlash(f.Path))] = []byte(f.Content)
	}
	cfg, err := config.LoadFiles(dir, files)
	if err != nil {
		r.log.Warn("history: the last generation does not load as its files are now: this start's generation lists everything as added", "generation", last, "error", firstLine(err.Error()))
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.track.Changes(cfg)
	r.audited = auditedOf(dir, cfg)
}

// lastGeneration is the newest generation recorded by earlier runs, so
// that this run's numbering continues from it.
func (r *recorder) lastGeneration() uint64 {
	if r.store == nil {
		return 0
	}
	n, _ := r.store.Last()
	return n
}

// auditLine is one line of state_dir/audit.log.
type auditLine struct {
	Time       time.Time            `json:"time"`
	Event      string               `json:"event"` // reload, announce
	Trigger    string               `json:"trigger"`
	Cause      string               `json:"cause,omitempty"`
	User       string               `json:"user,omitempty"`
	Result     string               `json:"result"` // success | unchanged | failure
	Generation uint64               `json:"generation"`
	Files      []history.FileChange `json:"changed_files,omitempty"`
	Changes    []history.Change     `json:"changes,omitempty"`
	Errors     []string             `json:"errors,omitempty"`
	// ErrorsOmitted: how many errors after Errors the attempt had (it
	// keeps the first edge reports).
	ErrorsOmitted int `json:"errors_omitted,omitempty"`
	// Announced and Claim are an announcement's: the files a command
	// said it would write (path → SHA-256, "" moved away) and the claim
	// it got.
	Announced map[string]string `json:"announced_files,omitempty"`
	Claim     uint64            `json:"claim,omitempty"`
}

// setOrigin says why the next reloads run, until the next call.
func (r *recorder) setOrigin(o origin) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.origin = o
}

// announce registers a claim and returns its id, or refuses it when the
// claims held would pass maxClaims or maxClaimBytes.
func (r *recorder) announce(c *claim) (uint64, error) {
	// A map entry costs its strings and about 64 bytes besides.
	c.size = 0
	for p, sum := range c.files {
		c.size += len(p) + len(sum) + 64
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneClaims(time.Now())
	if len(r.claims) >= maxClaims || r.claimBytes+c.size > maxClaimBytes {
		return 0, fmt.Errorf("announce: %d announcements are pending (%d bytes), the most edged holds; they end with their command's reload or after their timeout", len(r.claims), r.claimBytes)
	}
	r.claimID++
	r.claims[r.claimID] = c
	r.claimBytes += c.size
	return r.claimID, nil
}

// dropClaim forgets claim id. Called with r.mu held.
func (r *recorder) dropClaim(id uint64) {
	if c := r.claims[id]; c != nil {
		r.claimBytes -= c.size
		delete(r.claims, id)
	}
}

// endClaim forgets claim id and returns the last generation attributed to
// it (0 when none or unknown).
func (r *recorder) endClaim(id uint64) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.claims[id]
	r.dropClaim(id)
	if c == nil {
		return 0
	}
	return c.generation
}

// emptySum is the SHA-256 of an empty file.
var emptySum = config.SHA256Hex(nil)

// announcedEmpty reports whether a live announcement (edged rollback's)
// says the file at path, under the config directory dir, is written
// empty: the running edged must then take it as the generation restored,
// not as a file half written.
func (r *recorder) announcedEmpty(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		return false
	}
	rel = filepath.ToSlash(rel)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneClaims(time.Now())
	for _, c := range r.claims {
		if c.files[rel] == emptySum {
			return true
		}
	}
	return false
}

// claimOf returns the claim id, if it is still there.
func (r *recorder) claimOf(id uint64) *claim {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.claims[id]
}

func (r *recorder) pruneClaims(now time.Time) {
	for id, c := range r.claims {
		if now.After(c.expires) {
			r.dropClaim(id)
		}
	}
}

// attribute decides the cause and user of a generation that changed the
// files in changed (now: their new sums). Called with r.mu held.
func (r *recorder) attribute(gen uint64, changed []history.FileChange, now map[string]string) (cause, user string) {
	o := r.origin
	if c := r.claims[o.claim]; o.claim != 0 && c != nil {
		c.generation = gen
		return c.cause, c.user
	}
	r.pruneClaims(time.Now())
	if len(changed) > 0 {
		for _, c := range r.claims {
			if c.covers(changed, now) {
				c.generation = gen
				return c.cause, c.user
			}
		}
	}
	if o.cause == "" {
		return history.CauseFileChange, ""
	}
	return o.cause, o.user
}

// covers reports whether every change is one c announced.
func (c *claim) covers(changed []history.FileChange, now map[string]string) bool {
	for _, fc := range changed {
		want, ok := c.files[fc.Path]
		if !ok {
			return false
		}
		if fc.Action == "removed" {
			if want != "" {
				return false
			}
		} else if want != now[fc.Path] {
			return false
		}
	}
	return true
}

func (r *recorder) applied(dir string, cfg *config.Config, rec edge.ReloadRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changes := r.track.Changes(cfg)
	files, err := history.FilesOf(dir, cfg.Files)
	if err != nil {
		r.log.Warn("history: reading config files", "error", err.Error())
	}
	now := history.Sums(files)
	var changed []history.FileChange
	if r.prev != nil {
		changed = history.ChangedFiles(dir, r.prev, files)
	}
	r.prev = now
	cause, user := r.attribute(rec.Generation, changed, now)
	r.remember(summary(rec.Generation, rec.Time, cause, user, changes))
	line := auditLine{Time: rec.Time, Event: "reload", Trigger: rec.Trigger, Cause: cause, User: user, Result: "success", Generation: rec.Generation, Files: changed, Changes: changes}
	r.auditEnvironments(dir, cfg, line)
	if r.store == nil {
		return
	}
	hr := history.Record{Generation: rec.Generation, Time: rec.Time, Trigger: rec.Trigger, Cause: cause, User: user, Files: files, Changed: changed, Changes: changes}
	if err := r.store.Save(hr); err != nil {
		r.log.Warn("history: saving generation", "generation", rec.Generation, "error", err.Error())
	}
	r.audit(line)
}

// auditEnvironments writes, to the audit log of every environment that has
// rules.audit_log on, the changes of this generation that touch it, with
// the changed files that hold its objects (a removed file's objects are
// gone: it is listed in none).
func (r *recorder) auditEnvironments(dir string, cfg *config.Config, line auditLine) {
	if r.auditEnv == nil {
		return
	}
	changes := line.Changes
	// write sends env the changes touching it, with the changed files
	// among files, those that hold (or held) its objects.
	write := func(env string, files map[string]bool, to func(string, []byte)) {
		var mine []history.Change
		for _, c := range changes {
			if c.Env == env {
				mine = append(mine, c)
			}
		}
		if len(mine) == 0 || to == nil {
			return
		}
		l := line
		l.Event, l.Changes, l.Files = "config", mine, nil
		for _, f := range line.Files {
			if files[f.Path] {
				l.Files = append(l.Files, f)
			}
		}
		b, err := json.Marshal(l)
		if err == nil {
			to(env, append(termsafe.JSON(b), '\n'))
		}
	}
	audited := auditedOf(dir, cfg)
	for _, e := range cfg.Environments {
		if files, ok := audited[e.Name]; ok {
			write(e.Name, files, r.auditEnv)
		}
	}
	// An environment audited until now, removed or with its audit_log
	// turned off: the change is the last line of its trail, with the
	// files that held it (a removed file among them).
	for env, files := range r.audited {
		if _, ok := audited[env]; !ok {
			write(env, files, r.auditGone)
		}
	}
	r.audited = audited
}

// auditedOf lists the environments of cfg that have rules.audit_log on,
// each with the files (relative to dir) that hold its objects.
func auditedOf(dir string, cfg *config.Config) map[string]map[string]bool {
	holds := map[string]map[string]bool{} // env → files holding its objects, relative to dir
	note := func(env string, pos config.Pos) {
		rel, err := filepath.Rel(dir, pos.File)
		if err != nil {
			return
		}
		if holds[env] == nil {
			holds[env] = map[string]bool{}
		}
		holds[env][filepath.ToSlash(rel)] = true
	}
	for _, e := range cfg.Environments {
		note(e.Name, e.Pos)
	}
	for _, u := range cfg.Upstreams {
		note(u.Environment, u.Pos)
	}
	for _, p := range cfg.Proxies {
		note(p.Environment, p.Pos)
	}
	audited := map[string]map[string]bool{}
	for _, e := range cfg.Environments {
		if e.Rules.AuditLog.On() {
			audited[e.Name] = holds[e.Name]
		}
	}
	return audited
}

// audit appends line to state_dir/audit.log. A line that cannot be
// written (a full disk, a file system gone read-only) goes to edged's own
// log instead, whole: it is the trail of who changed what, as an
// environment's audit line that cannot wait goes there ("audit log is
// behind").
func (r *recorder) audit(line auditLine) {
	err := r.store.Audit(line)
	if err == nil {
		return
	}
	b, merr := json.Marshal(line)
	if merr != nil {
		r.log.Error("audit log write failed", "error", err.Error())
		return
	}
	r.log.Error("audit log write failed: its line is logged here instead", "error", err.Error(), "line", string(b))
}

// unchanged audits a reload that found nothing to change. It makes no
// generation, so the history is left alone: no-op reloads must not push
// real generations out of it.
func (r *recorder) unchanged(rec edge.ReloadRecord) { r.auditAttempt(rec, "unchanged") }

// failed audits a refused reload, with its errors.
func (r *recorder) failed(rec edge.ReloadRecord) { r.auditAttempt(rec, "failure") }

// auditAttempt writes the audit line of a reload that made no generation.
func (r *recorder) auditAttempt(rec edge.ReloadRecord, result string) {
	r.mu.Lock()
	o := r.origin
	r.mu.Unlock()
	if r.store == nil {
		return
	}
	line := auditLine{Time: rec.Time, Event: "reload", Trigger: rec.Trigger, Cause: o.cause, User: o.user, Result: result, Generation: rec.Generation, ErrorsOmitted: rec.ErrorsOmitted}
	for _, e := range rec.Errors {
		line.Errors = append(line.Errors, e.Error())
	}
	r.audit(line)
}

// auditAnnounce writes the audit line of an announcement: it decides whose
// the next generation is, so it is a control action like a reload. id is
// the claim given, 0 when err refused it.
func (r *recorder) auditAnnounce(a announceArgs, user string, gen, id uint64, err error) {
	if r.store == nil {
		return
	}
	line := auditLine{Time: time.Now(), Event: "announce", Trigger: "edged " + a.Cause, Cause: a.Cause, User: user,
		Result: "success", Generation: gen, Announced: a.Files, Claim: id}
	if err != nil {
		line.Trigger, line.Result, line.Errors = "announce", "failure", []string{err.Error()}
	}
	r.audit(line)
}

// reload runs one reload for o. Reloads are one at a time (the watcher's,
// SIGHUP's and the control socket's), so the recorder knows, while one
// runs, why it does.
func (d *daemon) reload(trigger string, o origin) edge.ReloadRecord {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.reloading.Store(true)
	defer func() {
		d.reloading.Store(false)
		select {
		case d.reloadEnded <- struct{}{}:
		default: // one token says it
		}
	}()
	d.hist.setOrigin(o)
	defer d.hist.setOrigin(origin{})
	return d.rl.Reload(trigger)
}

// servingGeneration is the generation that serves, once a reload under
// way is over: a generation is swapped in before its record is written
// (OnApplied), and both happen under reloadMu, so a command told this
// number finds its record in the history (edged diff).
func (d *daemon) servingGeneration() uint64 {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	return d.srv.Snapshot().Generation
}

// announceArgs is what `edged promote` and `edged rollback` send before
// they write: the files they will write, with their content's SHA-256
// ("" for a file they move away), relative to the config directory.
type announceArgs struct {
	Cause    string            `json:"cause"`
	SudoUser string            `json:"sudo_user,omitempty"`
	Files    map[string]string `json:"files"`
	// TTL is how long the claim holds, in seconds, should the command
	// never ask for its reload (--no-wait, or it died).
	TTL int `json:"ttl"`
}

// reloadArgs is what a command may send with "reload".
type reloadArgs struct {
	Cause    string `json:"cause,omitempty"`
	SudoUser string `json:"sudo_user,omitempty"`
	Claim    uint64 `json:"claim,omitempty"`
}

// reloadReply is the answer to "reload". AppliedAs is, for a command's
// reload that found nothing left to do, the generation that applied its
// files when the watcher saw them first.
type reloadReply struct {
	edge.ReloadRecord
	AppliedAs uint64 `json:"applied_as,omitempty"`
}

// maxClaimTTL bounds how long an announcement may claim changes.
const maxClaimTTL = 10 * time.Minute

// startControl serves the control socket: "reload", and "announce"
// before a command writes files.
func (d *daemon) startControl(ctx context.Context, stateDir string) (*control.Server, error) {
	return control.Listen(ctx, control.Path(stateDir), func(ctx context.Context, req control.Request) (any, error) {
		switch req.Command {
		case "reload":
			var a reloadArgs
			if err := decodeArgs(req, &a); err != nil {
				return nil, err
			}
			o := origin{cause: history.CauseReload, user: req.Peer.User(a.SudoUser)}
			if a.Cause == history.CausePromote || a.Cause == history.CauseRollback {
				o.cause = a.Cause
			}
			// An announcement this process no longer holds (it was
			// restarted since, or the announcement outlived its TTL
			// while a large rollback wrote) does not stop the reload the
			// command asks for: its files are written, and the reload
			// is still the command's, as one made without announcing.
			if c := d.hist.claimOf(a.Claim); a.Claim != 0 && c != nil {
				o = origin{cause: c.cause, user: c.user, claim: a.Claim}
			}
			rec := d.reload(o.cause, o)
			reply := reloadReply{ReloadRecord: rec}
			if a.Claim != 0 {
				if gen := d.hist.endClaim(a.Claim); rec.Unchanged && gen != 0 {
					reply.AppliedAs = gen
				}
			}
			return reply, nil
		case "generation":
			return map[string]uint64{"generation": d.servingGeneration()}, nil
		case "announce":
			var a announceArgs
			err := decodeArgs(req, &a)
			user := req.Peer.User(a.SudoUser)
			if err != nil {
				d.hist.auditAnnounce(a, user, d.srv.Snapshot().Generation, 0, err)
				return nil, err
			}
			if a.Cause != history.CausePromote && a.Cause != history.CauseRollback {
				err := fmt.Errorf("announce: cause %q is not %q or %q", a.Cause, history.CausePromote, history.CauseRollback)
				d.hist.auditAnnounce(a, user, d.srv.Snapshot().Generation, 0, err)
				return nil, err
			}
			ttl := time.Duration(a.TTL) * time.Second
			if ttl <= 0 || ttl > maxClaimTTL {
				ttl = maxClaimTTL
			}
			id, err := d.hist.announce(&claim{cause: a.Cause, user: user, files: a.Files, expires: time.Now().Add(ttl)})
			d.hist.auditAnnounce(a, user, d.srv.Snapshot().Generation, id, err)
			if err != nil {
				return nil, err
			}
			return map[string]uint64{"claim": id}, nil
		default:
			return nil, fmt.Errorf("unknown command %q", req.Command)
		}
	}, d.log)
}

func decodeArgs(req control.Request, v any) error {
	if len(req.Args) == 0 {
		return nil
	}
	if err := json.Unmarshal(req.Args, v); err != nil {
		return errors.New(req.Command + ": arguments: " + err.Error())
	}
	return nil
}
