package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"edged/internal/config"
	"edged/internal/control"
	"edged/internal/history"
	"edged/internal/termsafe"
	"edged/internal/unidiff"
)

func cmdHistory(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("history", "history [GEN] [-c DIR]", stderr)
	genArg, err := parseWithArg(fs, args)
	if err != nil {
		return err
	}
	st, err := openStore(*dir)
	if err != nil {
		return err
	}
	// The history holds files' names, which anyone who may write to a
	// home chose (and the watcher's triggers name them): shown through
	// visible, like a diff, never sent to the terminal as they are.
	var out, warn strings.Builder
	if err := listHistory(st, genArg, &out, &warn); err != nil {
		if err == errUsage {
			fmt.Fprintf(stderr, "edged history: %q is not a generation number\n", genArg)
			fs.Usage()
		}
		return err
	}
	_, err = io.WriteString(stdout, visible(out.String()))
	io.WriteString(stderr, visible(warn.String()))
	return err
}

// listHistory writes the history (genArg "") or one generation of it; the
// records it cannot read, to warn.
func listHistory(st *history.Store, genArg string, stdout, warn io.Writer) error {
	if genArg != "" {
		gen, err := strconv.ParseUint(genArg, 10, 64)
		if err != nil {
			return errUsage
		}
		return showGeneration(st, gen, stdout)
	}
	// One record at a time: the history holds up to history_keep
	// records of every file's name and hash, and a row keeps only what
	// it shows.
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GENERATION\tTIME\tCAUSE\tUSER\tFILES\tCHANGES")
	damaged, err := st.Walk(func(r *history.Record) error {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", r.Generation, r.Time.Local().Format(time.DateTime), visibleName(history.CauseOf(r)), visibleName(orDash(r.User)), len(r.Files), visibleName(listedChanges(r)))
		if testHookListed != nil {
			testHookListed()
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, err := range damaged {
		fmt.Fprintf(warn, "edged history: %v\n", err)
	}
	return tw.Flush()
}

// listedChanges is the CHANGES column of a generation: its first
// changesShown changes, then how many more it has (a first start adds
// every object), as the status page lists them; edged history GEN shows
// them all.
func listedChanges(r *history.Record) string {
	shown := r.Changes
	if len(shown) > changesShown {
		shown = shown[:changesShown]
	}
	s := strings.Join(changeList(shown), "; ")
	if more := len(r.Changes) - len(shown); more > 0 {
		s += fmt.Sprintf("; and %d more (edged history %d)", more, r.Generation)
	}
	return s
}

// testHookListed, when set by a test, runs after each generation edged
// history lists.
var testHookListed func()

func changeList(changes []history.Change) []string {
	var out []string
	for _, c := range changes {
		name := c.Kind + " " + c.Name
		if c.Env != "" && c.Kind != "environment" {
			name = c.Env + "/" + name
		}
		out = append(out, c.Action+" "+name)
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// showGeneration prints one generation: why, by whom, the files it
// changed (with their owner and time), the objects, and every file's hash.
func showGeneration(st *history.Store, gen uint64, stdout io.Writer) error {
	r, err := st.Meta(gen)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "generation\t%d\n", r.Generation)
	fmt.Fprintf(tw, "time\t%s\n", r.Time.Local().Format(time.RFC3339))
	fmt.Fprintf(tw, "cause\t%s\n", history.CauseOf(r))
	fmt.Fprintf(tw, "user\t%s\n", orDash(r.User))
	fmt.Fprintf(tw, "trigger\t%s\n", visibleName(r.Trigger))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nfiles changed:")
	if len(r.Changed) == 0 {
		fmt.Fprintln(stdout, "  -")
	}
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, c := range r.Changed {
		line := "  " + c.Action + "\t" + visibleName(c.Path)
		if c.Owner != "" {
			line += "\towner " + visibleName(c.Owner)
		}
		if !c.ModTime.IsZero() {
			line += "\tmodified " + c.ModTime.Local().Format(time.RFC3339)
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nobjects changed:")
	if len(r.Changes) == 0 {
		fmt.Fprintln(stdout, "  -")
	}
	for _, c := range changeList(r.Changes) {
		fmt.Fprintln(stdout, "  "+visibleName(c))
	}
	fmt.Fprintln(stdout, "\nfiles (SHA-256):")
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, f := range r.Files {
		fmt.Fprintf(tw, "  %s\t%s\n", visibleName(f.SHA256), visibleName(f.Path))
	}
	return tw.Flush()
}

// parseUpToTwo parses the args of a command that takes up to two
// arguments, before or after its flags.
func parseUpToTwo(fs *flag.FlagSet, args []string) ([]string, error) {
	var lead []string
	for len(args) > 0 && len(lead) < 2 && !strings.HasPrefix(args[0], "-") {
		lead, args = append(lead, args[0]), args[1:]
	}
	if err := parseArgs(fs, args, 2-len(lead)); err != nil {
		return nil, err
	}
	return append(lead, fs.Args()...), nil
}

func cmdDiff(args []string, stdout, stderr io.Writer) error {
	fs, dir, ctl := controlFlags("diff", "diff [GEN [GEN2]] [-c DIR] [--control PATH]", stderr)
	gens, err := parseUpToTwo(fs, args)
	if err != nil {
		return err
	}
	nums := make([]uint64, len(gens))
	for i, g := range gens {
		if nums[i], err = strconv.ParseUint(g, 10, 64); err != nil {
			fmt.Fprintf(stderr, "edged diff: %q is not a generation number\n", g)
			fs.Usage()
			return errUsage
		}
	}
	st, err := openStore(*dir)
	if err != nil {
		return err
	}
	var from, to *history.Record
	var fromFiles, toFiles map[string]string
	var hidden map[string]bool
	var fromLabel, toLabel string
	switch len(nums) {
	case 2:
		if from, err = st.Get(nums[0]); err != nil {
			return err
		}
		if to, err = st.Get(nums[1]); err != nil {
			return err
		}
	case 1:
		if from, err = st.Get(nums[0]); err != nil {
			return err
		}
		if to, err = serving(st, *dir, *ctl, stderr); err != nil {
			return err
		}
	default:
		if from, err = serving(st, *dir, *ctl, stderr); err != nil {
			return err
		}
		if toFiles, hidden, err = pendingFiles(*dir, stderr); err != nil {
			return err
		}
		toLabel = "pending in " + filepath.Clean(*dir)
	}
	fromFiles, fromLabel = contents(from), "generation "+strconv.FormatUint(from.Generation, 10)
	if to != nil {
		toFiles, toLabel = contents(to), "generation "+strconv.FormatUint(to.Generation, 10)
	}
	// What is pending there is not known: no change is shown.
	for p := range hidden {
		delete(fromFiles, p)
	}
	out := diffFiles(fromFiles, toFiles, fromLabel, toLabel)
	if out == "" {
		fmt.Fprintf(stderr, "edged diff: no differences between %s and %s\n", fromLabel, toLabel)
		return nil
	}
	_, err = io.WriteString(stdout, out)
	return err
}

// serving is the record of the generation the running edged serves; when
// it does not answer, the newest one in the history, which is what it
// served last.
func serving(st *history.Store, dir, ctl string, stderr io.Writer) (*history.Record, error) {
	if ctl == "" {
		ctl = control.Path(config.StateDir(dir))
	}
	var out struct{ Generation uint64 }
	if err := control.Call(ctl, "generation", 5*time.Second, &out); err == nil && out.Generation > 0 {
		return st.Get(out.Generation)
	}
	last, err := st.Last()
	if err != nil {
		return nil, err
	}
	if last == 0 {
		return nil, fmt.Errorf("the history of %s is empty: no generation to compare with", dir)
	}
	fmt.Fprintf(stderr, "edged diff: the running edged did not answer; comparing with the newest generation in the history, %d\n", last)
	return st.Get(last)
}

func contents(r *history.Record) map[string]string {
	m := make(map[string]string, len(r.Files))
	for _, f := range r.Files {
		m[f.Path] = f.Content
	}
	return m
}

// pendingFiles reads the config files of dir as a reload would find them
// (the .toml files only: certificates and keys are never read here), but
// those reached through a symbolic link that others than this user and
// root may have put there (history.OpenNoForeignLink): their relative paths are
// in hidden, and stderr says why. The loader follows links, and edged
// diff runs as root often (sudo): a link x.toml -> ../certs/prod.key in
// an environment's home, made by one of its writers, would have it print
// the key, and /etc/shadow likewise.
func pendingFiles(dir string, stderr io.Writer) (files map[string]string, hidden map[string]bool, err error) {
	paths, err := config.Files(dir)
	if err != nil {
		return nil, nil, err
	}
	files, hidden = make(map[string]string, len(paths)), map[string]bool{}
	// A load reads no more than config.MaxTotalSize of them, and refuses
	// the directory past it: so is the diff, not read whole (up to
	// 2 MiB each of 100,000 files) and printed.
	var total int64
	for _, p := range paths {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil, nil, err
		}
		// Opened as checked, one name at a time: a link renamed over a
		// file between a check and an open by name would be read.
		f, err := history.OpenNoForeignLink(dir, rel)
		var link *history.ForeignLinkError
		switch {
		case errors.As(err, &link):
			fmt.Fprintf(stderr, "edged diff: %s: %s is not shown: edged diff follows no such link, as it could lead to any file (a private key)\n",
				visibleName(link.Error()), visibleName(p))
			hidden[filepath.ToSlash(rel)] = true
			continue
		case err != nil:
			return nil, nil, err
		}
		b, err := config.ReadOpened(f, config.MaxFileSize)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		if total += int64(len(b)); total > config.MaxTotalSize {
			return nil, nil, fmt.Errorf("%s: configuration files add up to more than the %d bytes (%d MiB) allowed, at %s; a reload refuses them (edged check -c %s)",
				dir, config.MaxTotalSize, config.MaxTotalSize>>20, visibleName(p), dir)
		}
		files[filepath.ToSlash(rel)] = string(b)
	}
	return files, hidden, nil
}

// diffFiles is the unified diff of two sets of files (path → content),
// file by file in path order; a file only in one set is diffed against
// /dev/null. Each header names the side after a tab, where diff puts
// the time, so that patch(1) still reads it.
func diffFiles(a, b map[string]string, aLabel, bLabel string) string {
	paths := make([]string, 0, len(a)+len(b))
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var out strings.Builder
	for _, p := range paths {
		ac, inA := a[p]
		bc, inB := b[p]
		// The name is shown on its header line: a newline in it would
		// start lines of its own, which read as a hunk.
		name := visibleName(p)
		an, bn := "a/"+name+"\t"+aLabel, "b/"+name+"\t"+bLabel
		if !inA {
			an = "/dev/null\t" + aLabel
		}
		if !inB {
			bn = "/dev/null\t" + bLabel
		}
		if inA && inB && ac == bc {
			continue
		}
		out.WriteString(unidiff.Unified(an, bn, ac, bc))
	}
	return visible(out.String())
}

// visible shows the control characters of s (C0 but tab and newline, a
// carriage return not ending a line, DEL, C1, the bidirectional controls)
// and its bytes that are not UTF-8 as Go escapes (\x1b, \u009b, \u202e,
// \xff). The files diffed may be
// anyone's bytes (a pending file, a file's name, written by a writer of
// any home), and a terminal would act on an escape sequence (move the
// cursor, erase the line above) and show the operator something other
// than the change. A valid configuration file holds none of them but
// the bidirectional controls (TOML allows tab and CRLF only), so a diff
// of valid files without those, which patch(1) applies, is unchanged.
func visible(s string) string {
	return string(termsafe.Visible([]byte(s)))
}

// visibleName is visible for what is shown on one line, or in a column
// (a file's name, a trigger naming one): its newlines, tabs and carriage
// returns are shown as escapes too. A file's name may hold any byte but
// NUL and /, and one with a newline would otherwise print lines of its
// own: a hunk in a diff, a file or a generation in the history.
func visibleName(s string) string {
	return lineEscapes.Replace(visible(s))
}

// lineEscapes is visibleName's: made once, as a Replacer builds a table
// of 6 KB at its first use (one made at each call made `edged routes`
// allocate 36 KB a row).
var lineEscapes = strings.NewReplacer("\n", `\n`, "\t", `\t`, "\r", `\r`)
