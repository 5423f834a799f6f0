package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"edged/edge"
	"edged/internal/config"
	"edged/internal/control"
	"edged/internal/history"
)

// recorder writes the history and the audit log of the running process.
type recorder struct {
	store *history.Store // nil when state_dir is unusable
	log   *slog.Logger
	mu    sync.Mutex
	track history.Tracker // follows the applied configs
	// auditEnv appends a line to an environment's own audit log (rules.audit_log).
	auditEnv func(env string, line []byte)
	// recent are the last applied generations, newest first, for the
	// status page: kept here so that /status reads no file.
	recent []edge.GenerationSummary
}

// recentKept is how many generations the status page lists, and
// changesShown how many changes of each (a first start adds everything).
const (
	recentKept   = 10
	changesShown = 12
)

// summary is a generation as the status page lists it.
func summary(gen uint64, t time.Time, trigger string, changes []history.Change) edge.GenerationSummary {
	s := edge.GenerationSummary{Generation: gen, Time: t, Trigger: trigger}
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
	r.recent = append([]edge.GenerationSummary{g}, r.recent...)
	if len(r.recent) > recentKept {
		r.recent = r.recent[:recentKept]
	}
}

// recentGenerations returns the last applied generations, newest first.
func (r *recorder) recentGenerations() []edge.GenerationSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]edge.GenerationSummary(nil), r.recent...)
}

func openHistory(sc config.Server, log *slog.Logger) *recorder {
	st, err := history.Open(sc.StateDir, sc.HistoryKeep)
	if err != nil {
		log.Warn("history disabled: state_dir is not writable", "state_dir", sc.StateDir, "error", err.Error())
	}
	r := &recorder{store: st, log: log}
	if st != nil {
		// Earlier runs' generations, oldest first, up to what the page
		// lists; a number missing from the history is skipped.
		if last, err := st.Last(); err == nil {
			var found []*history.Record
			for g := last; g > 0 && g+4*recentKept > last && len(found) < recentKept; g-- {
				if rec, err := st.Get(g); err == nil {
					found = append(found, rec)
				}
			}
			for i := len(found) - 1; i >= 0; i-- {
				r.remember(summary(found[i].Generation, found[i].Time, found[i].Trigger, found[i].Changes))
			}
		}
	}
	return r
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
	Time       time.Time        `json:"time"`
	Event      string           `json:"event"` // reload
	Trigger    string           `json:"trigger"`
	Result     string           `json:"result"` // success | unchanged | failure
	Generation uint64           `json:"generation"`
	Changes    []history.Change `json:"changes,omitempty"`
	Errors     []string         `json:"errors,omitempty"`
}

func (r *recorder) applied(dir string, cfg *config.Config, rec edge.ReloadRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changes := r.track.Changes(cfg)
	r.remember(summary(rec.Generation, rec.Time, rec.Trigger, changes))
	r.auditEnvironments(cfg, rec, changes)
	if r.store == nil {
		return
	}
	files, err := history.FilesOf(dir, cfg.Files)
	if err != nil {
		r.log.Warn("history: reading config files", "error", err.Error())
	}
	hr := history.Record{Generation: rec.Generation, Time: rec.Time, Trigger: rec.Trigger, Files: files, Changes: changes}
	if err := r.store.Save(hr); err != nil {
		r.log.Warn("history: saving generation", "generation", rec.Generation, "error", err.Error())
	}
	if err := r.store.Audit(auditLine{Time: rec.Time, Event: "reload", Trigger: rec.Trigger, Result: "success", Generation: rec.Generation, Changes: changes}); err != nil {
		r.log.Warn("audit log", "error", err.Error())
	}
}

// auditEnvironments writes, to the audit log of every environment that has
// rules.audit_log on, the changes of this generation that touch it.
func (r *recorder) auditEnvironments(cfg *config.Config, rec edge.ReloadRecord, changes []history.Change) {
	if r.auditEnv == nil {
		return
	}
	for _, e := range cfg.Environments {
		if !e.Rules.AuditLog.On() {
			continue
		}
		var mine []history.Change
		for _, c := range changes {
			if c.Env == e.Name {
				mine = append(mine, c)
			}
		}
		if len(mine) == 0 {
			continue
		}
		line, err := json.Marshal(auditLine{Time: rec.Time, Event: "config", Trigger: rec.Trigger, Result: "success", Generation: rec.Generation, Changes: mine})
		if err == nil {
			r.auditEnv(e.Name, append(line, '\n'))
		}
	}
}

// unchanged audits a reload that found nothing to change. It makes no
// generation, so the history is left alone: no-op reloads must not push
// real generations out of it.
func (r *recorder) unchanged(rec edge.ReloadRecord) {
	if r.store == nil {
		return
	}
	line := auditLine{Time: rec.Time, Event: "reload", Trigger: rec.Trigger, Result: "unchanged", Generation: rec.Generation}
	if err := r.store.Audit(line); err != nil {
		r.log.Warn("audit log", "error", err.Error())
	}
}

func (r *recorder) failed(rec edge.ReloadRecord) {
	if r.store == nil {
		return
	}
	line := auditLine{Time: rec.Time, Event: "reload", Trigger: rec.Trigger, Result: "failure", Generation: rec.Generation}
	for _, e := range rec.Errors {
		line.Errors = append(line.Errors, e.Error())
	}
	if err := r.store.Audit(line); err != nil {
		r.log.Warn("audit log", "error", err.Error())
	}
}

// startControl serves `edged reload` on state_dir's control socket.
func startControl(ctx context.Context, stateDir string, rl *edge.Reloader, log *slog.Logger) (*control.Server, error) {
	return control.Listen(ctx, control.Path(stateDir), func(ctx context.Context, cmd string) (any, error) {
		switch cmd {
		case "reload":
			return rl.Reload("edged reload"), nil
		default:
			return nil, fmt.Errorf("unknown command %q", cmd)
		}
	}, log)
}

// controlFlags adds -c DIR and --control PATH.
func controlFlags(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string, *string) {
	fs, dir := newFlags(name, synopsis, stderr)
	ctl := fs.String("control", "", "control socket `PATH` (default: edged.sock in the state_dir of -c DIR)")
	return fs, dir, ctl
}

func cmdReload(args []string, stdout, stderr io.Writer) error {
	fs, dir, ctl := controlFlags("reload", "reload [-c DIR | --control PATH]", stderr)
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for the outcome")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return askReload("reload", *dir, *ctl, *timeout, stdout, stderr)
}

// waitFlags adds, to a command that writes config files, how it waits for
// the running edged to apply them.
func waitFlags(fs *flag.FlagSet) (noWait *bool, ctl *string, timeout *time.Duration) {
	noWait = fs.Bool("no-wait", false, "write the files and exit: do not ask the running edged to apply them")
	ctl = fs.String("control", "", "control socket `PATH` (default: edged.sock in the state_dir of -c DIR)")
	timeout = fs.Duration("timeout", 60*time.Second, "how long to wait for the running edged's outcome")
	return noWait, ctl, timeout
}

// askReload has the running edged (its control socket at ctl, or in the
// state_dir of dir) reload now and reports the outcome: nil when what is on
// disk serves, errSilent with the errors on stderr when it was refused. A
// reload racing the watcher's for the same files answers "nothing
// changed", which is as true.
func askReload(name, dir, ctl string, timeout time.Duration, stdout, stderr io.Writer) error {
	if ctl == "" {
		ctl = control.Path(config.StateDir(dir))
	}
	var rec edge.ReloadRecord
	if err := control.Call(ctl, "reload", timeout, &rec); err != nil {
		if name == "reload" {
			return err
		}
		fmt.Fprintf(stderr, "edged %s: the files are written, but the running edged did not answer: %v (with --no-wait, %s does not ask)\n", name, err, name)
		return errSilent
	}
	if !rec.OK {
		for _, e := range rec.Errors {
			fmt.Fprintln(stderr, e.Error())
		}
		if name == "reload" {
			fmt.Fprintf(stderr, "edged reload: failed; still serving generation %d\n", rec.Generation)
		} else {
			fmt.Fprintf(stderr, "edged %s: the running edged refused the files written; still serving generation %d\n", name, rec.Generation)
		}
		return errSilent
	}
	if rec.Unchanged {
		fmt.Fprintf(stdout, "reloaded: nothing changed, generation %d serves\n", rec.Generation)
		return nil
	}
	fmt.Fprintf(stdout, "reloaded: generation %d", rec.Generation)
	if ch := rec.Change; ch != nil {
		fmt.Fprintf(stdout, " (environments added %s, changed %s, removed %s, kept %d)",
			list(ch.Added), list(ch.Changed), list(ch.Removed), len(ch.Kept))
	}
	fmt.Fprintln(stdout)
	return nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// openStore opens the history of the configuration in dir. A mistyped -c
// would otherwise open (and create) the default state_dir's history as if
// it were this directory's.
func openStore(dir string) (*history.Store, error) {
	if err := requireDir(dir); err != nil {
		return nil, err
	}
	return history.Open(config.StateDir(dir), config.DefaultHistoryKeep)
}

// requireDir fails unless dir is an existing directory.
func requireDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("config directory %s does not exist (-c names the directory of the .toml files)", dir)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (-c names the directory of the .toml files)", dir)
	}
	return nil
}

func cmdHistory(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("history", "history [-c DIR]", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	st, err := openStore(*dir)
	if err != nil {
		return err
	}
	recs, err := st.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GENERATION\tTIME\tFILES\tTRIGGER\tCHANGES")
	for _, r := range recs {
		var ch []string
		for _, c := range r.Changes {
			name := c.Kind + " " + c.Name
			if c.Env != "" && c.Kind != "environment" {
				name = c.Env + "/" + name
			}
			ch = append(ch, c.Action+" "+name)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", r.Generation, r.Time.Local().Format(time.DateTime), len(r.Files), r.Trigger, strings.Join(ch, "; "))
	}
	return tw.Flush()
}

func cmdRollback(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("rollback", "rollback GEN [-c DIR] [--no-wait | --control PATH]", stderr)
	noWait, ctl, timeout := waitFlags(fs)
	genArg, err := parseWithArg(fs, args)
	if err != nil {
		return err
	}
	gen, err := strconv.ParseUint(genArg, 10, 64)
	if err != nil {
		fs.Usage()
		return errUsage
	}
	st, err := openStore(*dir)
	if err != nil {
		return err
	}
	rec, err := st.Get(gen)
	if err != nil {
		return err
	}
	current, err := config.Files(*dir)
	if err != nil {
		return err
	}
	written, aside, err := history.Restore(rec, *dir, current)
	for _, p := range aside {
		fmt.Fprintf(stdout, "moved aside %s\n", p)
	}
	for _, p := range written {
		fmt.Fprintf(stdout, "restored %s\n", p)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "generation %d restored into %s (%d files written)\n", gen, filepath.Clean(*dir), len(written))
	if *noWait {
		return nil
	}
	return askReload("rollback", *dir, *ctl, *timeout, stdout, stderr)
}
