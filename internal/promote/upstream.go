package promote

import (
	"bytes"
	"errors"
	"fmt"
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
func copyUpstream(req Request, cfg *config.Config, src *config.Proxy) (string, error) {
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
	rest, err := otherKeys("upstream", from.Name, from.Pos, "name", "environment", "nodes")
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

// otherKeys is the table of a [[kind]] (named name, at pos) as TOML
// key/value lines and subtables, without the keys in drop: what a copy
// carries over as it is. The table is read back from its file rather
// than written from the decoded struct, so that a copy keeps every key,
// the ones added to edged after this code included, and leaves out those
// the source left to their defaults.
func otherKeys(kind, name string, pos config.Pos, drop ...string) (string, error) {
	text, err := tableText(kind, name, pos)
	if err != nil {
		return "", err
	}
	var doc map[string][]map[string]any
	if _, err := toml.Decode(text, &doc); err != nil || len(doc[kind]) != 1 {
		return "", fmt.Errorf("%s: %s %q could not be read back for copying (%v): copy it by hand", pos, kind, name, err)
	}
	rest := doc[kind][0]
	for _, k := range drop {
		delete(rest, k)
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

// tableText is the text of the [[kind]] table at pos in its file: from
// its header to the next table that is not one of its own
// ([kind.health...]).
func tableText(kind, name string, pos config.Pos) (string, error) {
	content, err := config.ReadFile(pos.File)
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(string(content), "\n")
	if pos.Line < 1 || pos.Line > len(lines) || strings.TrimSpace(lines[pos.Line-1]) != "[["+kind+"]]" {
		return "", fmt.Errorf("%s: not a [[%s]] header: copy %s %q by hand", pos, kind, kind, name)
	}
	end := pos.Line
	for ; end < len(lines); end++ {
		t := strings.TrimSpace(lines[end])
		if strings.HasPrefix(t, "[") && !strings.HasPrefix(t, "["+kind+".") && !strings.HasPrefix(t, "[["+kind+".") {
			break
		}
	}
	return strings.Join(lines[pos.Line-1:end], ""), nil
}
