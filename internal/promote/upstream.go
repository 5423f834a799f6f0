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
	text, err := upstreamText(from)
	if err != nil {
		return "", err
	}
	var doc struct {
		Upstream []map[string]any `toml:"upstream"`
	}
	if _, err := toml.Decode(text, &doc); err != nil || len(doc.Upstream) != 1 {
		return "", fmt.Errorf("%s: upstream %q could not be read back for copying (%v): copy it by hand", from.Pos, from.Name, err)
	}
	rest := doc.Upstream[0]
	for _, k := range []string{"name", "environment", "nodes"} {
		delete(rest, k)
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
	if len(rest) > 0 {
		var enc bytes.Buffer
		e := toml.NewEncoder(&enc)
		e.Indent = ""
		if err := e.Encode(map[string]any{"upstream": []map[string]any{rest}}); err != nil {
			return "", fmt.Errorf("%s: upstream %q: %w", from.Pos, from.Name, err)
		}
		// The encoder's own [[upstream]] header is the one written above.
		_, body, _ := strings.Cut(enc.String(), "[[upstream]]\n")
		b.WriteString(body)
	}
	return b.String(), nil
}

// upstreamText is the text of u's table in its file: from its
// [[upstream]] header to the next table that is not one of its own
// ([upstream.health...]).
func upstreamText(u *config.Upstream) (string, error) {
	content, err := config.ReadFile(u.Pos.File)
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(string(content), "\n")
	if u.Pos.Line < 1 || u.Pos.Line > len(lines) || strings.TrimSpace(lines[u.Pos.Line-1]) != "[[upstream]]" {
		return "", fmt.Errorf("%s: not an [[upstream]] header: copy upstream %q by hand", u.Pos, u.Name)
	}
	end := u.Pos.Line
	for ; end < len(lines); end++ {
		t := strings.TrimSpace(lines[end])
		if strings.HasPrefix(t, "[") && !strings.HasPrefix(t, "[upstream.") && !strings.HasPrefix(t, "[[upstream.") {
			break
		}
	}
	return strings.Join(lines[u.Pos.Line-1:end], ""), nil
}
