package promote

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"edged/internal/atomicfile"
	"edged/internal/config"
	"edged/internal/history"
)

// Request says what to promote where.
type Request struct {
	Dir      string // the config directory
	Proxy    string // proxy name in From
	From, To string // environment names
	// Upstream names the upstream in To the copy forwards to; "" keeps
	// the source's upstream name. Target, instead, gives a one-node URL;
	// the source's path (target_path, or its target's path) is appended
	// to a URL without one.
	Upstream string
	Target   string
	// WithUpstream copies the source proxy's upstream into To, under the
	// name the copy forwards to, with Nodes (URLs) as its nodes: for a
	// target environment that does not have that upstream yet.
	WithUpstream bool
	Nodes        []string
	Now          func() time.Time // for the comment line; nil = time.Now
}

// Plan is the edit a promotion makes: one file's new content.
type Plan struct {
	Dir      string // the config directory, which File is below
	File     string // the file written (it may be new)
	Old      []byte // its content before
	Content  []byte
	Replaced bool   // the proxy existed in To and its block was replaced
	Block    string // the [[proxy]] block written
	Upstream string // the [[upstream]] block written (WithUpstream), or ""
}

// InvalidBeforeError is Prepare's error when the directory does not load
// as it is, before any edit: its errors (config.Errors, through Unwrap)
// are the directory's own, not the promotion's.
type InvalidBeforeError struct {
	Dir string
	Err error
}

func (e *InvalidBeforeError) Error() string {
	return fmt.Sprintf("the configuration in %s must be valid before a promotion: %v", e.Dir, e.Err)
}

func (e *InvalidBeforeError) Unwrap() error { return e.Err }

// Prepare works out the edit and validates the directory as it would be
// after it. On validation failure the error is config.Errors, wrapped in
// an InvalidBeforeError when the directory is invalid as it is.
func Prepare(req Request) (*Plan, error) {
	cfg, err := config.Load(req.Dir)
	if err != nil {
		return nil, &InvalidBeforeError{Dir: req.Dir, Err: err}
	}
	if testHookLoaded != nil {
		testHookLoaded()
	}
	var src, existing *config.Proxy
	for _, p := range cfg.Proxies {
		if p.Name == req.Proxy && p.Environment == req.From {
			src = p
		}
		if p.Name == req.Proxy && p.Environment == req.To {
			existing = p
		}
	}
	if src == nil {
		return nil, fmt.Errorf("proxy %q is not defined in environment %q", req.Proxy, req.From)
	}
	to := cfg.EnvironmentByName(req.To)
	if to == nil {
		return nil, fmt.Errorf("environment %q is not defined", req.To)
	}
	if req.From == req.To {
		return nil, errors.New("--from and --to name the same environment")
	}
	if req.Upstream != "" && req.Target != "" {
		return nil, errors.New("give --upstream or --target, not both")
	}
	// Everything below works from the files as the load read them,
	// never from a second read: a file edited meanwhile would otherwise
	// get the edit at the line the load found, in a file that no longer
	// holds the proxy there, and the copy would take keys from one
	// version of the source and its base path from another. Apply writes
	// only if the target file still holds what was loaded.
	loaded := make(map[string][]byte, len(cfg.Files))
	for _, f := range cfg.Files {
		loaded[f.Path] = f.Data
	}
	read := func(path string) ([]byte, error) {
		if b, ok := loaded[path]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("%s is not among the files loaded from %s", path, req.Dir)
	}
	block, err := renderBlock(req, src, read)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Dir: req.Dir, Block: block}
	// The file the copy goes into: the one holding the proxy it replaces,
	// else the target environment's.
	into := to.Pos.File
	if existing != nil {
		into = existing.Pos.File
	}
	if req.WithUpstream || len(req.Nodes) > 0 {
		if plan.Upstream, err = copyUpstream(req, cfg, src, into, read); err != nil {
			return nil, err
		}
	}
	if existing != nil {
		old, err := read(existing.Pos.File)
		if err != nil {
			return nil, err
		}
		content, err := replaceBlock(old, existing.Pos.Line, block)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", existing.Pos, err)
		}
		if plan.Upstream != "" {
			content = append(append(bytes.TrimRight(content, "\n"), '\n', '\n'), plan.Upstream...)
		}
		plan.File, plan.Old, plan.Content, plan.Replaced = existing.Pos.File, old, content, true
	} else {
		old, err := read(to.Pos.File)
		if err != nil {
			return nil, err
		}
		// A fresh slice: appending to the trimmed old text would write
		// into old's array, which plan.Old (the diff's "before") keeps.
		content := append(slices.Clip(bytes.TrimRight(old, "\n")), '\n', '\n')
		if plan.Upstream != "" {
			content = append(append(content, plan.Upstream...), '\n')
		}
		plan.File, plan.Old, plan.Content = to.Pos.File, old, append(content, block...)
	}
	if crlfOnly(plan.Old) {
		// The lines written take the file's line ends.
		plan.Content = toCRLF(plan.Content)
	}
	if _, err := config.LoadOverlay(req.Dir, map[string][]byte{plan.File: plan.Content}); err != nil {
		return nil, err
	}
	return plan, nil
}

// Apply writes the planned file (temp file, then rename) with the mode and
// owner of the file it replaces, so the service can still read it. The
// content was worked out from Old: when the file holds something else by
// now (another promotion into the same file, a hand edit), writing it
// would undo that change, so Apply writes nothing and says to run the
// promotion again. First it removes, and returns, the temp files a
// promotion or rollback killed while writing the file left beside it
// (atomicfile.RemoveLeftTempsIn; the caller holds atomicfile.LockTree on
// Dir).
//
// It removes and writes in the file's directory as opened one name at a time from
// Dir, following no symbolic link that sits in a directory others may
// write to (history.OpenDirNoForeignLink), never by path: the target's
// home is writable by its operators, and a promotion runs with sudo, so
// a link one of them renamed over a directory on the way, before or
// while Apply runs, would have root write the file (or remove files of
// its temp files' names) wherever it leads (another environment's home).
func (p *Plan) Apply() (removed []string, err error) {
	rel, err := filepath.Rel(p.Dir, p.File)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("%s is not below %s: nothing written", p.File, p.Dir)
	}
	d, err := history.OpenDirNoForeignLink(p.Dir, filepath.Dir(rel), false)
	var link *history.ForeignLinkError
	if errors.As(err, &link) {
		return nil, fmt.Errorf("%w: a promotion follows no such link, as it could lead anywhere; nothing written: put the directory itself there, or %s",
			err, link.Remedy())
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if removed, err = atomicfile.RemoveLeftTempsIn(d, filepath.Base(rel)); err != nil {
		return removed, err
	}
	if err := atomicfile.ReplaceFileIfIn(d, filepath.Base(rel), p.Old, p.Content); err != nil {
		if errors.Is(err, atomicfile.ErrChanged) {
			return removed, fmt.Errorf("%s changed since the promotion read it: nothing written; run edged promote again", p.File)
		}
		return removed, err
	}
	return removed, nil
}

// renderBlock writes the [[proxy]] block of the copy: the source's, with
// the target environment, and what it forwards to as req says; read gives
// the source file's content as loaded.
func renderBlock(req Request, src *config.Proxy, read func(string) ([]byte, error)) (string, error) {
	now := time.Now
	if req.Now != nil {
		now = req.Now
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# promoted from %s by edged promote, %s\n", req.From, now().UTC().Format(time.RFC3339))
	b.WriteString("[[proxy]]\n")
	kv := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, strconv.Quote(v)) }
	kv("name", src.Name)
	kv("environment", req.To)
	kv("base_path", src.BasePath)
	switch {
	case req.Upstream != "" && req.Target != "":
		return "", errors.New("give --upstream or --target, not both")
	case req.Target != "":
		target, err := targetKeepingPath(req, src)
		if err != nil {
			return "", err
		}
		kv("target", target)
	case req.Upstream != "":
		kv("upstream", req.Upstream)
	case src.Upstream != "":
		kv("upstream", src.Upstream)
	default:
		return "", fmt.Errorf("proxy %q forwards to a fixed target in %q: give --upstream or --target for %q", src.Name, req.From, req.To)
	}
	// With an upstream the path forwarded to goes into target_path: the
	// source's target_path, or the path of its fixed target.
	if req.Target == "" {
		if p := src.ForwardPath(); p != "" {
			kv("target_path", p)
		}
	}
	// Everything else (max_in_flight...) is the same API's, carried over
	// as the source has it.
	content, err := read(src.Pos.File)
	if err != nil {
		return "", err
	}
	rest, err := otherKeys("proxy", src.Name, src.Environment, src.Pos, content, "", "name", "environment", "base_path", "upstream", "target", "target_path")
	if err != nil {
		return "", err
	}
	b.WriteString(rest)
	return b.String(), nil
}

// targetKeepingPath is req.Target with the path src forwards to: a promoted
// proxy forwards the same paths it did. A URL without a path gets the
// source's; a URL with another path is refused rather than silently
// changing what is forwarded (edit the file for that).
func targetKeepingPath(req Request, src *config.Proxy) (string, error) {
	want := src.ForwardPath()
	u, err := url.Parse(req.Target)
	if err != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.Host == "" {
		return req.Target, nil // not a target URL: the validation says why, with the file and line
	}
	switch got := strings.TrimRight(u.EscapedPath(), "/"); got {
	case "":
		return strings.TrimRight(req.Target, "/") + want, nil
	case want:
		return req.Target, nil
	default:
		if want == "" {
			want = "/"
		}
		return "", fmt.Errorf("--target %s forwards to path %s, but proxy %q forwards to %s in %q: give the URL without a path to keep %s", req.Target, got, src.Name, want, req.From, want)
	}
}

// replaceBlock swaps the [[proxy]] table starting at line (1-based) for
// block. The table ends before the next table header or at the end of the
// file; comments directly above the next header stay with it, and so do
// those that end the file (an operator's note after its last table).
func replaceBlock(content []byte, line int, block string) ([]byte, error) {
	lines := strings.SplitAfter(string(content), "\n")
	if line < 1 || line > len(lines) || !isArrayHeader(lines[line-1], "proxy") {
		return nil, fmt.Errorf("line %d is not a [[proxy]] header; edit the file by hand", line)
	}
	end := line
	for end < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[end]), "[") {
		end++
	}
	// Leave comment and blank lines that lead into the next table, or
	// that end the file.
	for end > line && isCommentOrBlank(lines[end-1]) {
		end--
	}
	start := line - 1
	if start > 0 && strings.HasPrefix(strings.TrimSpace(lines[start-1]), "# promoted from ") {
		start-- // the comment of an earlier promotion goes with its block
	}
	var b strings.Builder
	for _, l := range lines[:start] {
		b.WriteString(l)
	}
	b.WriteString(block)
	// A blank line sets the block apart from what follows, unless one
	// already does: the blank lines before the next table stay with it
	// (above), and adding one every time would grow the file with each
	// promotion.
	if end < len(lines) && strings.TrimSpace(lines[end]) != "" {
		b.WriteString("\n")
	}
	for _, l := range lines[end:] {
		b.WriteString(l)
	}
	return []byte(b.String()), nil
}

// testHookLoaded, when set by a test, runs when Prepare has loaded the
// directory: where an editor's write may come.
var testHookLoaded func()

// isArrayHeader reports whether l is the header of an array of tables
// named kind, written any way TOML allows: spaces inside the brackets, the
// name quoted, a comment after it (the loader reads them all alike; the
// line is the one the load found the table on, with the BOM of a file's
// first line).
func isArrayHeader(l, kind string) bool {
	t := strings.TrimSpace(strings.TrimPrefix(l, "\ufeff"))
	rest, ok := strings.CutPrefix(t, "[[")
	if !ok {
		return false
	}
	key, rest, ok := strings.Cut(rest, "]]")
	if !ok {
		return false
	}
	if rest = strings.TrimSpace(rest); rest != "" && !strings.HasPrefix(rest, "#") {
		return false
	}
	switch strings.TrimSpace(key) {
	case kind, `"` + kind + `"`, "'" + kind + "'":
		return true
	}
	return false
}

// crlfOnly reports whether every line of b ends in CRLF (and one does).
func crlfOnly(b []byte) bool {
	n := bytes.Count(b, []byte("\r\n"))
	return n > 0 && n == bytes.Count(b, []byte("\n"))
}

// toCRLF ends in CRLF the lines of b that end in a bare LF.
func toCRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+bytes.Count(b, []byte("\n")))
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

func isCommentOrBlank(l string) bool {
	t := strings.TrimSpace(l)
	return t == "" || strings.HasPrefix(t, "#")
}
