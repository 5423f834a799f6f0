package promote

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"edged/internal/config"
)

// copyUpstream renders the [[upstream]] block that --with-upstream adds to
// the target environment: the source proxy's upstream, every setting kept
// (balance, timeouts, health checks...), with the target's environment,
// the name the copy forwards to, and req.Nodes as its nodes. The source's
// nodes are never carried over: they are the source environment's
// backends (a test node serving prod is the mistake this prevents).
func copyUpstream(req Request, cfg *config.Config, src *config.Proxy, into string, read func(string) ([]byte, error)) (string, error) {
	if !req.WithUpstream {
		return "", errors.New("--node is for --with-upstream (the nodes of the upstream it copies)")
	}
	if req.Target != "" {
		return "", errors.New("--with-upstream copies an upstream; --target forwards to a fixed URL instead: give one of them")
	}
	if src.Upstream == "" {
		return "", fmt.Errorf("proxy %q forwards to a fixed target in %q: it has no upstream for --with-upstream to copy", src.Name, req.From)
	}
	if len(req.Nodes) == 0 {
		return "", fmt.Errorf("--with-upstream needs --node URL (repeatable): the backends of upstream %q in %q", src.Upstream, req.To)
	}
	name := req.Upstream
	if name == "" {
		name = src.Upstream
	}
	var from *config.Upstream
	for _, u := range cfg.Upstreams {
		if u.Environment == req.To && u.Name == name {
			return "", fmt.Errorf("environment %q already has upstream %q (%s): leave out --with-upstream and --node to use it, or edit it there", req.To, name, u.Pos)
		}
		if u.Environment == req.From && u.Name == src.Upstream {
			from = u
		}
	}
	if from == nil {
		return "", fmt.Errorf("upstream %q of proxy %q is not defined in %q", src.Upstream, src.Name, req.From)
	}
	content, err := read(from.Pos.File)
	if err != nil {
		return "", err
	}
	rest, err := otherKeys("upstream", from.Name, from.Environment, from.Pos, content, into, "name", "environment", "nodes")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# copied from upstream %s of %s by edged promote --with-upstream\n", from.Name, req.From)
	b.WriteString("[[upstream]]\n")
	fmt.Fprintf(&b, "name = %s\n", strconv.Quote(name))
	fmt.Fprintf(&b, "environment = %s\n", strconv.Quote(req.To))
	nodes := make([]string, len(req.Nodes))
	for i, n := range req.Nodes {
		nodes[i] = "{ url = " + strconv.Quote(n) + " }"
	}
	fmt.Fprintf(&b, "nodes = [%s]\n", strings.Join(nodes, ", "))
	b.WriteString(rest)
	return b.String(), nil
}

// otherKeys is the [[kind]] table named name in environment env, in the
// file at pos, whose content is content (as the load read it), as TOML key/value lines and subtables without the keys in
// drop: what a copy carries over as it is. The table is read back from its
// file rather than written from the decoded struct, so that a copy keeps
// every key, the ones added to edged after this code included, and leaves
// out those the source left to their defaults. The whole file is decoded
// and the table found by its name and environment, so that any way TOML
// allows to write it (a header with spaces, quotes or a comment, dotted
// keys, subtables) is read the same. It is decoded within the loader's
// limits (config.DecodeTOML): the decoder overflows its stack on deep
// enough nesting. A relative file path in it (pathKeys)
// is relative to the file at pos; into is the file the copy is written to
// ("" for a table that names no file), from which it is rewritten to name
// the same file.
func otherKeys(kind, name, env string, pos config.Pos, content []byte, into string, drop ...string) (string, error) {
	var doc map[string]any
	if err := config.DecodeTOML(pos.File, content, &doc); err != nil {
		return "", fmt.Errorf("%s: %s %q could not be read back for copying (%v): copy it by hand", pos, kind, name, err)
	}
	var tables []map[string]any
	switch v := doc[kind].(type) {
	case []map[string]any: // [[kind]] headers
		tables = v
	case []any: // kind = [{ ... }]
		for _, t := range v {
			if t, ok := t.(map[string]any); ok {
				tables = append(tables, t)
			}
		}
	}
	var rest map[string]any
	for _, t := range tables {
		if t["name"] == name && t["environment"] == env {
			rest = t
			break
		}
	}
	if rest == nil {
		return "", fmt.Errorf("%s: %s %q of %q was not found when its file was read back for copying: copy it by hand", pos, kind, name, env)
	}
	for _, k := range drop {
		delete(rest, k)
	}
	if into != "" {
		if err := rebasePaths(rest, filepath.Dir(pos.File), filepath.Dir(into)); err != nil {
			return "", fmt.Errorf("%s: %s %q: %w", pos, kind, name, err)
		}
	}
	if len(rest) == 0 {
		return "", nil
	}
	var enc bytes.Buffer
	e := toml.NewEncoder(&enc)
	e.Indent = ""
	if err := e.Encode(map[string]any{kind: []map[string]any{rest}}); err != nil {
		return "", fmt.Errorf("%s: %s %q: %w", pos, kind, name, err)
	}
	// The encoder's own [[kind]] header is the caller's to write.
	_, body, _ := strings.Cut(enc.String(), "[["+kind+"]]\n")
	return body, nil
}

// pathKeys are the keys of a copied table that name a file, relative to
// the file they are written in unless absolute.
var pathKeys = []string{"tls_ca_file", "tls_cert_file", "tls_key_file"}

// rebasePaths rewrites the relative pathKeys of t, written in directory
// from, to name the same files from directory to. They stay relative, so
// that a configuration directory moved as a whole still loads; an absolute
// path is left as it is.
func rebasePaths(t map[string]any, from, to string) error {
	for _, k := range pathKeys {
		p, ok := t[k].(string)
		if !ok || p == "" || filepath.IsAbs(p) {
			continue
		}
		absFrom, err := filepath.Abs(filepath.Join(from, p))
		if err != nil {
			return err
		}
		absTo, err := filepath.Abs(to)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(absTo, absFrom)
		if err != nil {
			rel = absFrom
		}
		t[k] = rel
	}
	return nil
}
