// Refreshes the status page from /status every 2 s. Every value is put in
// with textContent, never as markup: names and messages come from files.
"use strict";
(function () {
  var every = 2000;
  // An edged that is stopped or stuck accepts the connection and answers
  // nothing, and a fetch waits for ever: give up on one after this long.
  var patience = 10000;

  function el(tag, attrs) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(e, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { add(e, x); }); return; }
    e.appendChild(typeof c === "object" ? c : document.createTextNode(shown(String(c))));
  }
  // Control characters (tab and newline aside), C1 ones and the
  // bidirectional controls are shown as escapes, as the server's rendering
  // shows them (showControls): a bidirectional control would reorder the
  // text after it.
  var controls = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function shown(s) {
    return s.replace(controls, function (ch) {
      var h = ch.charCodeAt(0).toString(16);
      return ch.charCodeAt(0) < 0x80 ? "\\x" + ("0" + h).slice(-2) : "\\u" + ("000" + h).slice(-4);
    });
  }
  function svg(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }
  function when(t) { return new Date(t).toISOString().slice(0, 19).replace("T", " ") + " UTC"; }
  function ago(now, t) {
    var s = Math.max(0, Math.round((new Date(now) - new Date(t)) / 1000));
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }
  function rate(v) { return v.toFixed(1); }
  function ms(v) { return v > 0 ? (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms" : "–"; }
  function names(o) { return Object.keys(o || {}).sort(); }
  function table(head, rows) {
    return el("table", {}, el("thead", {}, el("tr", {}, head.map(function (h) { return el("th", {}, h); }))), el("tbody", {}, rows));
  }
  function num(v) { return el("td", { "class": "num" }, v); }
  function section(id, title, body) { return el("section", { id: id }, el("h2", {}, title), body); }
  function certClass(days) { return days < 14 ? "crit" : days < 30 ? "warn" : ""; }

  function points(vals) {
    var top = Math.max.apply(null, vals.concat([0]));
    var off = 180 - vals.length;
    return vals.map(function (v, i) {
      var y = top > 0 ? 31 - 30 * v / top : 31;
      return (off + i) + "," + y.toFixed(1);
    }).join(" ");
  }
  function spark(s) {
    var r = s.requests_per_second || [], p = s.p99_ms || [];
    var g = svg("svg", { "class": "spark", viewBox: "0 0 180 32", preserveAspectRatio: "none", role: "img" });
    var t = svg("title");
    t.textContent = "last 15 min, " + s.step_seconds + " s a point: req/s up to " +
      rate(Math.max.apply(null, r.concat([0]))) + ", p99 up to " + ms(Math.max.apply(null, p.concat([0])));
    g.appendChild(t);
    g.appendChild(svg("polyline", { "class": "req", points: points(r) }));
    g.appendChild(svg("polyline", { "class": "p99", points: points(p) }));
    return g;
  }

  function render(st) {
    var envs = st.environments || {};
    var cfg = [el("p", {}, "Serving generation ", el("strong", { id: "generation" }, st.generation),
      ", applied " + when(st.applied) + " (" + ago(st.now, st.applied) + ").",
      st.draining ? [" ", el("span", { "class": "bad" }, "Shutting down: not ready.")] : null)];
    var lr = st.last_reload;
    if (lr) {
      cfg.push(el("p", { id: "last-reload" }, "Last reload attempt " + when(lr.time) + " (" + ago(st.now, lr.time) + "), " + lr.trigger + ": ",
        lr.ok ? [el("span", { "class": "ok" }, "OK"), (lr.unchanged ? ", nothing changed" : "") + ", generation " + lr.generation + "."]
          : [el("span", { "class": "bad" }, "refused"), "; generation " + lr.generation + " keeps serving."]));
    }
    if (st.reload_errors && st.reload_errors.length) {
      cfg.push(el("ul", { id: "reload-errors", "class": "errors" }, st.reload_errors.map(function (e) {
        return el("li", {}, el("code", {}, e.where), " " + e.message);
      }), st.reload_errors_omitted ? el("li", {}, "… and " + st.reload_errors_omitted + " more errors (edged's log has them all).") : null));
    }
    var envRows = names(envs).map(function (n) {
      var e = envs[n], p = e.pool, r = e.rates;
      return el("tr", {}, el("td", { "class": "name" }, n), num(p.InFlight + " / " + p.Workers), num(p.Queued), num(p.Held),
        num(p.Rejected + p.TimedOut), num(rate(r.requests_per_second)), num(rate(r.errors_5xx_per_second)), num(ms(r.p99_ms)),
        el("td", {}, spark(r.series)));
    });
    var proxyRows = [], nodeRows = [], fileRows = [];
    function fileRow(by, key, f) {
      if (f) fileRows.push(el("tr", { "class": certClass(f.days_left) }, el("td", { "class": "name" }, by), el("td", {}, el("code", {}, key)),
        el("td", {}, el("code", {}, f.path)), el("td", {}, when(f.not_after)), num(f.days_left)));
    }
    (st.certificate_details || []).forEach(function (c) { fileRow("virtual host " + c.virtual_host, "client_ca_file", c.client_ca_file); });
    names(envs).forEach(function (n) {
      (envs[n].proxies || []).forEach(function (x) {
        proxyRows.push(el("tr", {}, el("td", {}, n), el("td", { "class": "name" }, x.name), el("td", {}, el("code", {}, x.base_path)),
          el("td", {}, x.target ? "target " + x.target : x.upstream),
          num(x.requests_per_second === null ? "–" : rate(x.requests_per_second))));
      });
      (envs[n].upstreams || []).forEach(function (u) {
        fileRow("upstream " + u.name + " (" + n + ")", "tls_cert_file", u.tls_cert_file);
        fileRow("upstream " + u.name + " (" + n + ")", "tls_ca_file", u.tls_ca_file);
        (u.nodes || []).forEach(function (d) {
          var state = d.healthy ? el("span", { "class": "ok" }, "healthy")
            : [el("span", { "class": "bad" }, d.stats.Down ? "down" : "ejected"),
              d.out_since ? " since " + when(d.out_since) + " (" + ago(st.now, d.out_since) + ")" : "",
              d.out_reason ? ": " + d.out_reason : ""];
          nodeRows.push(el("tr", {}, el("td", {}, n), el("td", { "class": "name" }, u.name), el("td", {}, el("code", {}, d.stats.Addr)),
            el("td", {}, state), num(d.stats.InFlight), num(d.stats.Idle)));
        });
      });
    });
    var drain = st.draining_environments || [], hist = st.recent_generations || [];
    return el("main", { id: "main" },
      section("config", "Configuration", cfg),
      section("environments", "Environments", table(["environment", "workers in use / total", "queued", "held", "rejected", "req/s", "5xx/s", "p99",
        el("span", {}, "last 15 min: ", el("span", { "class": "req" }, "req/s"), ", ", el("span", { "class": "p99" }, "p99"))], envRows)),
      section("groups", "Env groups", table(["group", "hostnames", "environments"], (st.groups || []).map(function (g) {
        return el("tr", {}, el("td", { "class": "name" }, g.name), el("td", {}, (g.hostnames || []).join(", ")), el("td", {}, (g.environments || []).join(", ")));
      }))),
      section("proxies", "Proxies", table(["environment", "proxy", "base path", "upstream", "req/s"], proxyRows)),
      section("upstreams", "Upstream nodes", table(["environment", "upstream", "node", "state", "in flight", "idle connections"], nodeRows)),
      section("certificates", "Certificates", [table(["virtual host", "names", "expires", "days left"], (st.certificate_details || []).map(function (c) {
        return el("tr", { "class": certClass(c.days_left) }, el("td", { "class": "name" }, c.virtual_host), el("td", {}, (c.names || []).join(", ") + (c.names_total > (c.names || []).length ? " and " + (c.names_total - (c.names || []).length) + " more" : "")),
          el("td", {}, when(c.not_after)), num(c.days_left));
      })), el("table", { id: "certificate-files" }, el("thead", {}, el("tr", {}, ["used by", "as", "file", "expires (earliest)", "days left"].map(function (h) { return el("th", {}, h); }))),
        el("tbody", {}, fileRows))]),
      section("draining", "Draining environments", drain.length ? table(["environment", "hash", "since", "in flight"], drain.map(function (d) {
        return el("tr", {}, el("td", { "class": "name" }, d.name), el("td", {}, el("code", {}, d.hash)), el("td", {}, when(d.since) + " (" + ago(st.now, d.since) + ")"), num(d.in_flight));
      })) : el("p", {}, "None.")),
      section("history", "Recent generations", hist.length ? table(["generation", "applied", "cause", "what changed"], hist.map(function (h) {
        return el("tr", {}, num(h.generation), el("td", {}, when(h.time)), el("td", {}, h.trigger), el("td", {}, (h.changes || []).join(", ") || "–"));
      })) : el("p", {}, "No history (state_dir is not writable, or edged runs without it).")));
  }

  function refresh() {
    var live = document.getElementById("live");
    var ctl = new AbortController(), timer = setTimeout(function () { ctl.abort(); }, patience);
    fetch("status?series=1", { cache: "no-store", signal: ctl.signal }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (st) {
      document.getElementById("main").replaceWith(render(st));
      live.textContent = "Live: refreshed from /status every 2 s, last at " + when(st.now) + ".";
      live.className = "";
    }).catch(function (err) {
      var why = ctl.signal.aborted ? "no answer within " + patience / 1000 + " s" : err.message;
      live.textContent = "Cannot reach /status (" + why + "); showing the last data.";
      live.className = "bad";
    }).finally(function () {
      clearTimeout(timer);
      setTimeout(refresh, every);
    });
  }
  refresh();
})();
