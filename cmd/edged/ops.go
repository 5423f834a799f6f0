package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"edged/internal/config"
	"edged/internal/control"
	"edged/internal/history"
)

// controlFlags adds -c DIR and --control PATH.
func controlFlags(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string, *string) {
	fs, dir := newFlags(name, synopsis, stderr)
	ctl := fs.String("control", "", "control socket `PATH` (default: edged.sock in the state_dir of -c DIR)")
	return fs, dir, ctl
}

func cmdReload(args []string, stdout, stderr io.Writer) error {
	fs, dir, ctl := controlFlags("reload", "reload [-c DIR | --control PATH]", stderr)
	timeout := timeoutFlag(fs, "how long (a `duration`) to wait for the outcome")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// A -c naming no directory names no state_dir: the default one's
	// edged would be reloaded in its place, and the command say so as if
	// DIR's had been.
	if *ctl == "" && flagSet(fs, "c") {
		if err := requireDir(*dir); err != nil {
			return err
		}
	}
	return askReload("reload", *dir, *ctl, *timeout, reloadArgs{SudoUser: os.Getenv("SUDO_USER")}, stdout, stderr)
}

// waitFlags adds, to a command that writes config files, how it waits for
// the running edged to apply them.
func waitFlags(fs *flag.FlagSet) (noWait *bool, ctl *string, timeout *time.Duration) {
	noWait = fs.Bool("no-wait", false, "write the files and exit: do not ask the running edged to apply them")
	ctl = fs.String("control", "", "control socket `PATH` (default: edged.sock in the state_dir of -c DIR)")
	timeout = timeoutFlag(fs, "how long (a `duration`) to wait for the running edged's outcome")
	return noWait, ctl, timeout
}

// timeoutFlag adds --timeout D (60s): how long to wait for the running
// edged over its control socket. Zero or less is a usage error: it would
// set a deadline already passed, and an applied reload would be reported
// as a time-out.
func timeoutFlag(fs *flag.FlagSet, usage string) *time.Duration {
	d := positiveDuration(60 * time.Second)
	fs.Var(&d, "timeout", usage)
	return (*time.Duration)(&d)
}

// positiveDuration is a flag.Value holding a duration above zero.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }

func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (use a number with a unit: \"30s\", \"2m\")")
	}
	if v <= 0 {
		return errors.New("must be a positive duration, like \"30s\"")
	}
	*d = positiveDuration(v)
	return nil
}

// askReload has the running edged (its control socket at ctl, or in the
// state_dir of dir) reload now and reports the outcome: nil when what is on
// disk serves, errSilent with the errors on stderr when it was refused.
// args say why (a command's cause and announcement) and who (SUDO_USER).
// A reload racing the watcher's for the same files answers "nothing
// changed", which is as true; for an announced change it also names the
// generation the watcher made of it.
func askReload(name, dir, ctl string, timeout time.Duration, args reloadArgs, stdout, stderr io.Writer) error {
	if ctl == "" {
		ctl = control.Path(config.StateDir(dir))
	}
	var rec reloadReply
	if err := control.CallWith(ctl, "reload", args, timeout, &rec); err != nil {
		if name == "reload" {
			return err
		}
		fmt.Fprintf(stderr, "edged %s: the files are written, but the running edged did not answer: %v (with --no-wait, %s does not ask)\n", name, err, name)
		return errSilent
	}
	if !rec.OK {
		for _, e := range rec.Errors {
			fmt.Fprintln(stderr, errorLine(e))
		}
		if rec.ErrorsOmitted > 0 {
			fmt.Fprintf(stderr, "... and %d more errors (run edged check for all)\n", rec.ErrorsOmitted)
		}
		if name == "reload" {
			fmt.Fprintf(stderr, "edged reload: failed; still serving generation %d\n", rec.Generation)
		} else {
			fmt.Fprintf(stderr, "edged %s: the running edged refused the files written; still serving generation %d\n", name, rec.Generation)
		}
		return errSilent
	}
	if rec.Unchanged && rec.AppliedAs != 0 {
		// The watcher saw the files first.
		fmt.Fprintf(stdout, "reloaded: generation %d applied the files; generation %d serves\n", rec.AppliedAs, rec.Generation)
		return nil
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

// announce tells the running edged, before a command writes files, which
// files it will write with which content (relative to dir; "" for a file
// moved away), so that the generation they make is recorded as the
// command's even when the watcher reloads before the command asks. It
// returns the claim to name in the reload, 0 when edged did not answer
// (the reload that follows says so, or --no-wait does not care).
func announce(dir, ctl, cause string, files map[string]string, ttl time.Duration) uint64 {
	if ctl == "" {
		ctl = control.Path(config.StateDir(dir))
	}
	rel := make(map[string]string, len(files))
	for p, sum := range files {
		r, err := filepath.Rel(dir, p)
		if err != nil {
			return 0
		}
		rel[filepath.ToSlash(r)] = sum
	}
	var out struct{ Claim uint64 }
	// Whole seconds, rounded up: 0 would be taken as none given, and
	// held for the running edged's most (maxClaimTTL).
	args := announceArgs{Cause: cause, SudoUser: os.Getenv("SUDO_USER"), Files: rel, TTL: int((ttl + time.Second - 1) / time.Second)}
	if err := control.CallWith(ctl, "announce", args, 5*time.Second, &out); err != nil {
		return 0
	}
	return out.Claim
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// openStore opens the history of the configuration in dir, to read it: it
// creates nothing (history.OpenReadOnly). A mistyped -c would otherwise
// open the default state_dir's history as if it were this directory's.
func openStore(dir string) (*history.Store, error) {
	if err := requireDir(dir); err != nil {
		return nil, err
	}
	return history.OpenReadOnly(config.StateDir(dir)), nil
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

// holds reports whether the file at rel below dir holds content, read as
// a rollback reads it (history.OpenNoForeignLink); a file it cannot read
// does not.
func holds(dir, rel, content string) bool {
	f, err := history.OpenNoForeignLink(dir, filepath.FromSlash(rel))
	if err != nil {
		return false
	}
	defer f.Close()
	b, err := config.ReadOpened(f, config.MaxFileSize)
	return err == nil && string(b) == content
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
		if genArg != "" {
			fmt.Fprintf(stderr, "edged rollback: %q is not a generation number\n", genArg)
		}
		fs.Usage()
		return errUsage
	}
	st, err := openStore(*dir)
	if err != nil {
		return err
	}
	unlock, err := lockConfig("rollback", *dir, stderr)
	if err != nil {
		return err
	}
	defer unlock() // at the latest; released before the reload is asked for
	rec, err := st.Get(gen)
	if err != nil {
		return err
	}
	current, err := config.Files(*dir)
	if err != nil {
		return err
	}
	// The announcement names the files the rollback changes: those it
	// moves aside, and those whose content is not the generation's. A
	// file it leaves as it is changes nothing to attribute, and every
	// one named costs a line of the announcement, bounded (a conf.d of
	// thousands of files would not fit).
	files := map[string]string{}
	for _, p := range current {
		files[p] = ""
	}
	restored := make(map[string][]byte, len(rec.Files))
	for _, f := range rec.Files {
		p := filepath.Join(*dir, filepath.FromSlash(f.Path))
		restored[p] = []byte(f.Content)
		if holds(*dir, f.Path, f.Content) {
			delete(files, p)
			continue
		}
		files[p] = config.SHA256Hex([]byte(f.Content))
	}
	// The history holds the .toml files only: a certificate the
	// generation names may be gone by now. Files that would not load are
	// not written (like promote): they would hold back every reload, and
	// a restart, until fixed by hand.
	if _, err := config.LoadFiles(*dir, restored); err != nil {
		var errs config.Errors
		if !errors.As(err, &errs) {
			return err
		}
		for _, e := range errs {
			fmt.Fprintln(stderr, errorLine(e))
		}
		fmt.Fprintf(stderr, "edged rollback: generation %d would not load with the files it names as they are now; nothing written\n", gen)
		return errSilent
	}
	claim := announce(*dir, *ctl, history.CauseRollback, files, *timeout)
	// A file's content the history holds comes back with a rollback to
	// its generation; one it does not (an edit not applied yet) is kept.
	done, err := history.Restore(rec, *dir, current, st.Holds)
	// The names are anyone's who may write to a home: shown, not sent
	// to the terminal as they are (see visible).
	sayRemoved(done.Removed, stdout)
	for _, p := range done.MovedAside {
		fmt.Fprintf(stdout, "moved aside %s\n", visibleName(p))
	}
	for _, c := range done.Kept {
		fmt.Fprintf(stdout, "kept %s (what %s held, which no generation has)\n", visibleName(c.Copy), visibleName(c.File))
	}
	for _, p := range done.Written {
		fmt.Fprintf(stdout, "restored %s\n", visibleName(p))
	}
	if err != nil && len(done.Written)+len(done.MovedAside) > 0 {
		// The last step's error alone reads as though nothing changed.
		fmt.Fprintf(stderr, "edged rollback: %s\n", visible(err.Error()))
		fmt.Fprintf(stderr, "edged rollback: stopped half way: %s holds some of generation %d's files and some of those it was replacing (what it changed is listed above); fix the cause and run edged rollback %d again\n", visibleName(filepath.Clean(*dir)), gen, gen)
		return errSilent
	}
	if err != nil {
		return err
	}
	unlock()
	fmt.Fprintf(stdout, "generation %d restored into %s (%d files written)\n", gen, filepath.Clean(*dir), len(done.Written))
	if *noWait {
		return nil
	}
	return askReload("rollback", *dir, *ctl, *timeout, reloadArgs{Cause: history.CauseRollback, SudoUser: os.Getenv("SUDO_USER"), Claim: claim}, stdout, stderr)
}
