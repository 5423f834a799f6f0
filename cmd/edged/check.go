package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"edged/edge"
	"edged/internal/config"
	"edged/internal/control"
	"edged/internal/history"
)

// newFlags makes a command's flag set with -c DIR. Its Usage is the
// command's help: synopsis, what it does, its flags.
func newFlags(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("c", "/etc/edged/conf.d", "configuration `DIR`ectory (every *.toml under it, recursively)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: edged %s\n\n", synopsis)
		if h := commandHelp[name]; h != "" {
			fmt.Fprintf(w, "%s\n\n", h)
		}
		fmt.Fprintln(w, "Flags:")
		fs.PrintDefaults()
	}
	return fs, dir
}

// helpRequest is what parseFlags returns for -h/--help: run prints text
// to stdout and exits 0.
type helpRequest struct{ text string }

func (h *helpRequest) Error() string { return "help requested" }

// parseFlags parses args of a command that takes no argument besides its
// flags. -h/--help gives a *helpRequest carrying the command's help. A flag
// error, or an argument left over, is told on stderr and gives errUsage
// (exit 2).
func parseFlags(fs *flag.FlagSet, args []string) error {
	return parseArgs(fs, args, 0)
}

// parseWithArg parses the args of a command that takes one argument (GEN,
// PROXY), before or after its flags, and returns it ("" when missing).
func parseWithArg(fs *flag.FlagSet, args []string) (string, error) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], parseArgs(fs, args[1:], 0)
	}
	if err := parseArgs(fs, args, 1); err != nil {
		return "", err
	}
	return fs.Arg(0), nil
}

// parseArgs is parseFlags allowing up to allowed arguments after the flags.
func parseArgs(fs *flag.FlagSet, args []string, allowed int) error {
	usage, out := fs.Usage, fs.Output()
	var help strings.Builder
	fs.Usage = func() {
		fs.SetOutput(&help)
		usage()
		fs.SetOutput(out)
	}
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		return &helpRequest{text: help.String()}
	case err != nil:
		// The flag package printed what is wrong, on one line.
		fmt.Fprintf(out, "Run 'edged %s -h' for its usage.\n", fs.Name())
		return errUsage
	}
	if fs.NArg() <= allowed {
		return nil
	}
	extra := fs.Args()[allowed:]
	msg := fmt.Sprintf("unexpected argument %q", extra[0])
	if len(extra) > 1 {
		msg = fmt.Sprintf("unexpected arguments %q", extra)
	}
	switch {
	case strings.HasPrefix(extra[0], "-"):
		msg += " (flags go before the arguments)"
	case allowed == 0 && fs.Lookup("c") != nil && !flagSet(fs, "c"):
		msg += fmt.Sprintf(" (to name the configuration directory: -c %s)", extra[0])
	}
	fmt.Fprintf(out, "edged %s: %s\nRun 'edged %s -h' for its usage.\n", fs.Name(), msg, fs.Name())
	return errUsage
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// errorLine is how a command prints a config error: its parts cut as
// /status cuts them (an error quotes its object's name in full, however
// long), on one line, its control characters shown (visibleName).
func errorLine(e config.Error) string { return visibleName(edge.ClipError(e).Error()) }

// warningLine is errorLine for a warning.
func warningLine(w config.Error) string { return visibleName(edge.ClipError(w).Warning()) }

// loadPlan loads, validates and compiles DIR, printing every error.
func loadPlan(dir string, stderr io.Writer) (*edge.Plan, error) {
	cfg, err := config.Load(dir)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, errorLine(e))
			}
			fmt.Fprintf(stderr, "edged: configuration in %s is invalid: %d error(s)\n", dir, len(errs))
			return nil, errSilent
		}
		return nil, err
	}
	plan, err := edge.Compile(cfg)
	if err != nil {
		return nil, err
	}
	return plan, nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("check", "check -c DIR", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	plan, err := loadPlan(*dir, stderr)
	if err != nil {
		return err
	}
	cfg := plan.Config
	if errs := logFileErrors(cfg); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(stderr, errorLine(e))
		}
		fmt.Fprintf(stderr, "edged: configuration in %s is invalid: %d error(s)\n", *dir, len(errs))
		return errSilent
	}
	// Ownership of the environments' homes is their access control: what
	// every user may write to is worth a warning here, where an operator
	// looks, rather than a stat of every file on every reload.
	warnings := append(slices.Clip(cfg.Warnings), config.WorldWritable(cfg)...)
	for _, w := range warnings {
		fmt.Fprintln(stderr, warningLine(w))
	}
	// edged serve refuses such a state_dir; so does its ExecStartPre.
	// Whose it must be is known only when check runs as the service's
	// user (ExecStartPre): root may check for another (sudo edged check).
	if err := history.CheckStateDir(cfg.Server.StateDir); err != nil {
		return err
	}
	if uid := os.Geteuid(); uid != 0 {
		if err := history.CheckStateDirOwner(cfg.Server.StateDir, uid); err != nil {
			return err
		}
	}
	if err := control.CheckPath(control.Path(cfg.Server.StateDir)); err != nil {
		return err
	}
	hosts := 0
	for _, g := range cfg.EnvGroups {
		hosts += len(g.Hostnames)
	}
	fmt.Fprintf(stdout, "configuration in %s is valid: %s, %s, %s, %s, %s, %s (%s, %s)\n", *dir,
		count(len(cfg.Environments), "environment"), count(len(cfg.EnvGroups), "env group"), count(hosts, "hostname"),
		count(len(cfg.Proxies), "proxy"), count(len(cfg.Upstreams), "upstream"), count(len(cfg.VirtualHosts), "virtual host"),
		count(len(cfg.Files), "file"), count(len(warnings), "warning"))
	return nil
}

// logFileErrors finds the access and audit logs edged serve could not
// open: serve opens each (creating the file, appending) before it
// listens, and does not start when one fails, so check, the unit's
// ExecStartPre, refuses them too. It creates nothing: a log file made by root running check
// would be one the service user cannot append to. Whether this user may
// write is asked of the kernel (access(2)), as the service user under
// ExecStartPre.
func logFileErrors(cfg *config.Config) []config.Error {
	var errs []config.Error
	for _, e := range cfg.Environments {
		al := e.Rules.AccessLog
		if !al.On() || al.Path == "" {
			continue
		}
		msg := edge.StateFileProblem(al.Path, cfg.Server.StateDir)
		if msg == "" {
			msg = logFileProblem(al.Path)
		}
		if msg != "" {
			errs = append(errs, config.Error{Pos: cfg.FieldPos(e, "rules.access_log.path"), Object: fmt.Sprintf("environment %q", e.Name),
				Field: "rules.access_log.path", Msg: msg})
		}
	}
	// So does each environment's audit log, state_dir/audit/ENV.log.
	for _, e := range cfg.Environments {
		if !e.Rules.AuditLog.On() {
			continue
		}
		if msg := auditLogProblem(edge.AuditLogPath(cfg.Server.StateDir, e.Name)); msg != "" {
			errs = append(errs, config.Error{Pos: cfg.FieldPos(e, "rules.audit_log"), Object: fmt.Sprintf("environment %q", e.Name),
				Field: "rules.audit_log", Msg: msg})
		}
	}
	return errs
}

// auditLogProblem says why edged serve could not make the directories of
// an environment's audit log at path (it makes state_dir and
// state_dir/audit when missing) and open it for appending, or "".
func auditLogProblem(path string) string {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return path + " is a directory; remove it: edged serve appends the environment's audit log there"
	case err == nil:
		return logFileProblem(path)
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR):
		return err.Error()
	}
	// Not there: the nearest directory up that is must let this user make
	// the rest.
	for dir := filepath.Dir(path); ; {
		fi, err := os.Stat(dir)
		switch {
		case err == nil:
			return creatableIn(path, dir, fi)
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR):
			return err.Error()
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return err.Error()
		}
		dir = parent
	}
}

// logFileProblem says why path cannot be opened for appending, or "".
func logFileProblem(path string) string {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return path + " is a directory; name a file in it"
	case err == nil && fi.Mode()&fs.ModeSocket != 0:
		return edge.SocketLogPathError(path).Error()
	case err == nil:
		if unix.Access(path, unix.W_OK) != nil {
			return fmt.Sprintf("%s is not writable by this user (uid %d); edged serve could not append to it", path, os.Getuid())
		}
		return ""
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, fs.ErrPermission):
		return err.Error()
	}
	// Not there, or not to be seen: its directory says why.
	dir := filepath.Dir(path)
	fi, err = os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s: directory %s does not exist; create it (mkdir -p %s), edged serve does not", path, dir, dir)
	case err != nil:
		return err.Error()
	}
	return creatableIn(path, dir, fi)
}

// creatableIn says why this user could not create the log path in dir,
// which exists (fi), or "".
func creatableIn(path, dir string, fi fs.FileInfo) string {
	switch {
	case !fi.IsDir():
		return fmt.Sprintf("%s: %s is not a directory", path, dir)
	case unix.Access(dir, unix.W_OK|unix.X_OK) != nil:
		return fmt.Sprintf("%s: directory %s is not writable by this user (uid %d); edged serve could not create the log in it", path, dir, os.Getuid())
	}
	return ""
}

// orUnknown is s, or "?" for an owner or group that could not be found.
func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// count renders "1 proxy", "3 proxies", "0 warnings".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
