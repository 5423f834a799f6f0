// Command report turns bench/run.sh's CSV (scenario,contender,round,metric,
// value) into Markdown tables: the median of the rounds with min–max, and
// edged's ratio to nginx on the key figure.
//
//	go run ./bench/report -csv bench/results/<stamp>.csv
//
// With -across, its arguments are several runs' CSVs, and it tells in
// which of them each goal of issues 12 and 14 holds:
//
//	go run ./bench/report -across bench/results/2026-12-05T*.csv
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

type col struct {
	metric, label string
	lowerBetter   bool
}

type scenario struct {
	name, title, about string
	cols               []col
	key                string // metric compared to nginx
}

// h1Cols are the columns of the two HTTPS/1.1 keep-alive scenarios.
var h1Cols = []col{{"rps", "req/s", false}, {"p50_ms", "p50 ms", true}, {"p99_ms", "p99 ms", true}, {"p999_ms", "p99.9 ms", true}, {"cpu_us_per_req", "CPU µs/req", true}, {"rss_mib", "RSS MiB", true}, {"backend_cpu_us_per_req", "backend CPU µs/req", true}, {"wrk_cpu_us_per_req", "wrk CPU µs/req", true}, {"load_cpu_busy_pct", "CPU 1 busy %", false}, {"proxy_sleeps_per_req", "proxy sleeps/req", true}}

var scenarios = []scenario{
	{"direct", "Backend alone, plain HTTP (the physical limit)",
		"wrk -t1 -c64 straight to the Go backend pinned on CPU 0; wrk on CPU 1.",
		[]col{{"rps", "req/s", false}, {"p50_ms", "p50 ms", true}, {"p99_ms", "p99 ms", true}, {"p999_ms", "p99.9 ms", true}, {"cpu_us_per_req", "CPU µs/req", true}, {"rss_mib", "RSS MiB", true}}, ""},
	{"h1", "HTTPS HTTP/1.1 keep-alive, 1 worker",
		"wrk -t1 -c64, TLS 1.3, ECDSA P-256; proxy on CPU 0 (nginx 1 worker, HAProxy nbthread 1, edged GOMAXPROCS=1); wrk + backend on CPU 1. backend and wrk CPU µs/req: what a request as the proxy forwards it costs the backend, and an answer as the proxy sends it costs wrk (CPU 1's busy time less the backend's: whatever else ran there is in it); when CPU 1 is full (busy % near 100), req/s = 1 ÷ (backend + wrk µs/req) is the load generator's limit, not the proxy's. proxy sleeps/req: its threads' voluntary context switches (waits for work) per request. BACKEND_CPU=proxy in the line above: the backend runs on CPU 0 beside the proxy and wrk has CPU 1 to itself (wrk CPU µs/req is then all of CPU 1's busy time), so that req/s is set by CPU 0's work, the proxy's and the backend's.",
		h1Cols, "cpu_us_per_req"},
	{"h1w2", "HTTPS HTTP/1.1 keep-alive, 2 workers",
		"As above with 2 workers/threads/GOMAXPROCS=2, the proxy allowed on CPUs 0–1 (so it shares CPU 1 with wrk and the backend).",
		h1Cols, "cpu_us_per_req"},
	{"h2", "HTTP/2 over TLS",
		"h2load -t1 -c16 -m16 -D <duration>; proxy on CPU 0, h2load + backend on CPU 1. mean = h2load's mean time per request.",
		[]col{{"rps", "req/s", false}, {"mean_ms", "mean ms", true}, {"cpu_us_per_req", "CPU µs/req", true}, {"rss_mib", "RSS MiB", true}, {"failed", "failed", true}}, "cpu_us_per_req"},
	{"newconn", "New TLS connection per request (SNI path)",
		"wrk -t1 -c32 -H 'Connection: close': every request is a full TLS 1.3 handshake (wrk resumes no session) with SNI test.acme.com; CPU µs per request = per connection.",
		[]col{{"rps", "conn/s", false}, {"p50_ms", "p50 ms", true}, {"p99_ms", "p99 ms", true}, {"cpu_us_per_req", "CPU µs/conn", true}, {"errors", "socket errors", true}}, "cpu_us_per_req"},
	{"isolation", "Isolation: environment B while environment A is flooded",
		"A: slow backend (200 ms), 32 in flight (edged workers 32 + queue 32, 1 s; nginx limit_conn 32; HAProxy maxconn 32 + timeout queue 1s), flooded by wrk -c256. B: fast backend, measured by wrk -c16 in windows of ISO_WINDOW s (ISO_B_PACE > 0 in the line above: each connection waits that many ms between an answer and its next request). With pairs (ISO_PAIRS > 0, the default): the flood's wrk starts once per row and is paused (SIGSTOP, its connections left open and idle) and resumed (SIGCONT); B is measured in ISO_PAIRS pairs of adjacent windows, one with A idle (ISO_SETTLE s after the pause, and once A has no request left) and one flooded (ISO_SETTLE s after the resume), alone first and flooded first by turns; **paired ratio = median over the row's pairs of (flooded p99 ÷ alone p99)**, the table the median of the rounds. The set columns compare the same windows as two sets, as before pairs (median flooded ÷ median alone; least: lowest ÷ lowest; quiet: medians of the windows in which processes outside the bench took less than ISO_QUIET % of one CPU); quiet pairs: both windows quiet. idle conns = B's p99 alone with A's 256 paused connections open ÷ B's p99 right after with none (the flood's end). A answers/s: over the flood's running time (wrk), and per flooded window (the proxy's own counters); A inside = A's requests in the proxy (in a worker, queued or held) at a flooded window's start (median); A left = the same at the start of an alone window (max), unsettled = pauses after which A still had some at ISO_SETTLE. Without pairs (ISO_PAIRS=0): 2 windows alone, ISO_WINDOWS flooded from the flood's ISO_WARMUP-th second, 2 alone after. 1.0 = perfect isolation. edged: a full queue's 503 held for reject_delay (default: queue_timeout, at most 1 s). edged-qN: edged again with A's queue = N, larger than the flood (queue, don't reject: HAProxy's way); edged-dD: reject_delay = D (A_REJECT_OLD; edged-d0s, \"0s\", is the instant 503 of before held rejections); both applied by a reload between rows. haproxy-split (ISO_SPLIT=on; ISO_SPLIT=idle in the line above: A's process under SCHED_IDLE, run only when CPU 0 is otherwise idle): B measured on HAProxy as in the haproxy row, A's flood sent to a second HAProxy process of its own on the same CPU 0 (a deployment per environment: what is left when nothing is shared but the machine, what a shared process is measured against; A's figures, its CPU an answer included, are that second process's). ISO_A_CLASS=idle in the line above: A's flood (its wrk) and A's backend run under SCHED_IDLE on CPU 1, only when B's wrk and backend have nothing to run. A's CPU µs an answer, B idle: after the pairs the flood runs ISO_A_WINDOW s more with B idle; the proxy's CPU then ÷ A's answers (its own counters) is what one of A's answers costs the process B shares.",
		[]col{{"p99_ratio_pairs", "paired ratio", true}, {"p99_ratio_pairs_quiet", "paired, quiet pairs", true}, {"p99_alone_ms", "B p99 alone ms", true}, {"p99_flooded_ms", "B p99 flooded ms", true}, {"p99_ratio", "ratio of the sets", true}, {"p99_ratio_min", "sets, least disturbed", true}, {"p99_ratio_quiet", "sets, quiet windows", true}, {"quiet_pairs", "quiet pairs", false}, {"quiet_alone", "quiet windows alone", false}, {"quiet_flooded", "quiet windows flooded", false}, {"foreign_pct", "others' CPU %", true}, {"idle_conns_ratio", "idle conns", true}, {"b_rps_alone", "B req/s alone", false}, {"b_rps_flooded", "B req/s flooded", false}, {"a_rps", "A answers/s", false}, {"a_rps_window", "A answers/s per flooded window", false}, {"a_rps_window_min", "least window", false}, {"a_cpu_us_per_answer", "A's CPU µs an answer, B idle", true}, {"a_rps_b_idle", "A answers/s, B idle", false}, {"a_non2xx_per_s", "A 503/s", true}, {"a_busy_flooded", "A inside, flooded", false}, {"a_busy_alone", "A left", true}, {"a_unsettled", "unsettled", true}, {"b_errors_flooded", "B errors", true}}, "p99_ratio_pairs"},
	{"iso_pair", "Isolation: every pair of the rows above",
		"Each pair: one window of B with A idle beside one flooded, adjacent; median (min–max) over every pair of every round.",
		[]col{{"ratio", "pair's ratio", true}, {"p99_alone_ms", "B p99 alone ms", true}, {"p99_flooded_ms", "B p99 flooded ms", true}}, ""},
	{"hung", "Isolation inside an environment: a proxy whose backend hangs, and its sibling",
		"Environment A (32 workers, queue 32, 1 s): HUNG_CLIENTS (128, 4× the workers) closed-loop clients (wrk) call /hung, whose backend answers after 60 s (5 s response timeout); /ok of the same environment, fast backend, measured as B is in the isolation scenario. With pairs (HUNG_PAIRS > 0, the default): the flood's wrk starts once per row and is paused (SIGSTOP) and resumed (SIGCONT); /ok is measured in HUNG_PAIRS pairs of adjacent windows, one with /hung idle (ISO_SETTLE s after the pause, and once the proxy has no request of A's left: the hung ones end on the response timeout) and one during the flood (ISO_SETTLE s after the resume), alone first and during first by turns; **paired ratio = median over the row's pairs of (during p99 ÷ alone p99)**; the set columns compare the same windows as two sets (median during ÷ median alone). Without pairs (HUNG_PAIRS=0): 2 windows alone, ISO_WINDOWS during from the flood's ISO_WARMUP-th second, 2 alone after. edged: default shares (each proxy at most 24 workers and 24 queue places); nginx: limit_conn 32 for A's server and 24 for /hung; HAProxy: /hung's backend maxconn 24, /ok's maxconn 32 (separate queues). success = /ok's 2xx ÷ its requests during; /hung left = the most requests of A's still in the proxy at an alone window's start (0: /hung idle in every one).",
		[]col{{"p99_ratio_pairs", "paired ratio", true}, {"p99_alone_ms", "/ok p99 alone ms", true}, {"p99_during_ms", "/ok p99 during ms", true}, {"p99_ratio", "ratio of the sets", true}, {"ok_success_pct", "/ok success %", false}, {"ok_rps_alone", "/ok req/s alone", false}, {"ok_rps_during", "/ok req/s during", false}, {"hung_answers", "/hung answers", false}, {"hung_non2xx", "/hung non-2xx", true}, {"pairs", "pairs", false}, {"a_busy_alone", "/hung left in an alone window", true}}, ""},
	{"hung_pair", "Hung proxy: every pair of the rows above",
		"Each pair: one window of /ok with /hung idle beside one during its flood, adjacent; median (min–max) over every pair of every round.",
		[]col{{"ratio", "pair's ratio", true}, {"p99_alone_ms", "/ok p99 alone ms", true}, {"p99_flooded_ms", "/ok p99 during ms", true}}, ""},
	{"openloop", "Isolation against an open-loop flood: environment B while A is offered a fixed rate",
		"A as in the isolation scenario (serves 32 / 200 ms = 160 req/s), offered OPENLOOP_RATES requests/s (2× and 10×) by bench/openloop: fixed-rate starts over HTTPS/1.1 keep-alive, at most 4096 connections, a start with every connection busy counted as missed. B measured as in the isolation scenario (windows alone, beside the flood from its ISO_WARMUP-th second, alone after; medians of the windows), and once beside the flood during its first ISO_WARMUP seconds (ramp: the generator opens its connections). Row = contender@rate. held = edged's edged_environment_requests_held for A mid-run.",
		[]col{{"p99_alone_ms", "B p99 alone ms", true}, {"p99_ramp_ms", "B p99 ramp ms", true}, {"p99_ramp_ratio", "ramp ratio", true}, {"p99_loaded_ms", "B p99 loaded ms", true}, {"p99_ratio", "ratio", true}, {"b_errors", "B errors", true}, {"a_started_per_s", "A offered/s", false}, {"a_ok_per_s", "A 200/s", false}, {"a_503_per_s", "A 503/s", true}, {"a_p99_ms", "A p99 ms", true}, {"a_errors", "A errors", true}, {"a_missed", "A missed", true}, {"a_held", "held", true}}, ""},
	{"openloop_b_during", "Open loop: proxy CPU and memory while B is measured beside A's flood", "", []col{{"cpu_us_per_req", "CPU µs per B request (A's work included)", true}, {"rss_mib", "RSS MiB", true}}, ""},
	{"iso_b_flooded", "Isolation: proxy CPU while B is measured during the flood", "", []col{{"cpu_us_per_req", "CPU µs per B request (A's work included)", true}, {"rss_mib", "RSS MiB", true}}, ""},
	{"reload_baseline", "Reload under load: baseline without reloads", "wrk -t1 -c64 on B, no reloads.", []col{{"rps", "req/s", false}, {"p99_ms", "p99 ms", true}, {"p999_ms", "p99.9 ms", true}}, ""},
	{"reload", "Reload under load",
		"wrk -t1 -c64 on environment B while environment A's config changes every 200 ms (edged: a.toml rewritten, edged reloads by itself with reload_debounce 50ms; nginx: include rewritten + SIGHUP; HAProxy -W: A's file rewritten + SIGUSR2). lost = (socket errors + non-2xx) ÷ requests. RELOAD_SECONDS (10 s) per round.",
		[]col{{"reloads_sent", "reloads sent", false}, {"reloads_applied", "applied", false}, {"requests", "requests", false}, {"socket_errors", "socket errors", true}, {"non2xx", "non-2xx", true}, {"lost_pct", "lost %", true}, {"p99_ms", "p99 ms", true}, {"p999_ms", "p99.9 ms", true}, {"procs_after", "processes after", true}}, ""},
}

var rcCols = []col{{"startup_ms", "start ms", true}, {"one_ms", "1 env changed: ms to serve", true}, {"one_cpu_ms", "CPU ms", true}, {"all_ms", "all envs changed: ms to serve", true}, {"all_cpu_ms", "CPU ms", true}, {"rss_idle_mib", "RSS idle MiB", true}, {"hwm_mib", "peak RSS MiB", true}, {"rss_load_mib", "RSS under load MiB", true}, {"load_rps", "req/s", false}, {"load_cpu_us_per_req", "CPU µs/req", true}}

type key struct{ scen, who, metric string }

// keyFallback names the key figure of CSVs written before it existed:
// runs before pairs have no paired ratio, only the ratio of the sets.
var keyFallback = map[string]string{"p99_ratio_pairs": "p99_ratio"}

func main() {
	path := flag.String("csv", "", "CSV written by bench/run.sh")
	across := flag.Bool("across", false, "the arguments are several runs' CSVs: tell, target by target, in which of them it holds")
	flag.Parse()
	if *across {
		var names []string
		var runs []map[key][]float64
		for _, p := range flag.Args() {
			rows, err := readCSV(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			vals, _ := load(rows)
			names = append(names, strings.TrimSuffix(filepath.Base(p), ".csv"))
			runs = append(runs, vals)
		}
		acrossRuns(os.Stdout, names, runs)
		return
	}
	rows, err := readCSV(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	render(os.Stdout, rows)
}

func readCSV(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return csv.NewReader(f).ReadAll()
}

// render writes the Markdown tables of the CSV's rows (header first).
func render(w io.Writer, rows [][]string) {
	vals, whoOrder := load(rows)
	for _, s := range scenarios {
		whos := whoOrder[s.name]
		if len(whos) == 0 {
			continue
		}
		fmt.Fprintf(w, "### %s\n\n", s.title)
		if s.about != "" {
			fmt.Fprintf(w, "%s\n\n", s.about)
		}
		table(w, s, whos, vals)
		if s.key != "" {
			if alt, ok := keyFallback[s.key]; ok && len(vals[key{s.name, "edged", s.key}]) == 0 {
				s.key = alt
			}
			ratio(w, s, vals)
		}
	}
	if whos := whoOrder["reloadcost"]; len(whos) > 0 {
		fmt.Fprintf(w, "### edged reload cost and memory by configuration size\n\n")
		fmt.Fprintf(w, "NNNNp_MMe = NNNN proxies over MM environments (one upstream per environment, 5 environments per env group, every group its own hostname under the *.test.acme.com certificate, rules.prometheus on everywhere). \"ms to serve\" = from the first file write (temp file + rename) until the new route answers 200, reload_debounce 50ms included; \"all\" rewrites every environment's file. CPU ms = edged's utime+stime over the change. Under load: wrk -t1 -c64 on one proxy.\n\n")
		table(w, scenario{name: "reloadcost", cols: rcCols}, whos, vals)
		perThousand(w, vals)
	}
}

func stats(v []float64) (med, lo, hi float64) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		med = s[n/2]
	} else {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

func num(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func cell(v []float64) string {
	if len(v) == 0 {
		return "—"
	}
	med, lo, hi := stats(v)
	if len(v) == 1 || lo == hi {
		return num(med)
	}
	return fmt.Sprintf("%s (%s–%s)", num(med), num(lo), num(hi))
}

func table(w io.Writer, s scenario, whos []string, vals map[key][]float64) {
	var cols []col
	for _, c := range s.cols {
		for _, who := range whos {
			if len(vals[key{s.name, who, c.metric}]) > 0 {
				cols = append(cols, c)
				break
			}
		}
	}
	hdr := []string{""}
	sep := []string{"---"}
	for _, c := range cols {
		hdr = append(hdr, c.label)
		sep = append(sep, "---:")
	}
	fmt.Fprintf(w, "| %s |\n|%s|\n", strings.Join(hdr, " | "), strings.Join(sep, "|"))
	for _, who := range whos {
		row := []string{who}
		for _, c := range cols {
			row = append(row, cell(vals[key{s.name, who, c.metric}]))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
}

func ratio(w io.Writer, s scenario, vals map[key][]float64) {
	e, n := vals[key{s.name, "edged", s.key}], vals[key{s.name, "nginx", s.key}]
	if len(e) == 0 || len(n) == 0 {
		return
	}
	em, _, _ := stats(e)
	nm, _, _ := stats(n)
	if nm == 0 {
		return
	}
	var label string
	var lower bool
	for _, c := range s.cols {
		if c.metric == s.key {
			label, lower = c.label, c.lowerBetter
		}
	}
	r := em / nm
	verdict := "edged wins"
	if (lower && r > 1) || (!lower && r < 1) {
		verdict = "edged loses"
	}
	if r > 0.98 && r < 1.02 {
		verdict = "a tie"
	}
	line := fmt.Sprintf("**edged ÷ nginx, %s: %.2f× — %s.**", label, r, verdict)
	h := vals[key{s.name, "haproxy", s.key}]
	if len(h) > 0 {
		hm, _, _ := stats(h)
		if hm > 0 {
			line += fmt.Sprintf(" (edged ÷ HAProxy: %.2f×.)", em/hm)
		}
	}
	fmt.Fprintf(w, "%s\n\n", line)
}

// load collects the CSV's values (header first) by scenario, contender
// and metric, and each scenario's contenders in the order they first come.
func load(rows [][]string) (map[key][]float64, map[string][]string) {
	vals := map[key][]float64{}
	whoOrder := map[string][]string{}
	for _, r := range rows[min(1, len(rows)):] {
		if len(r) != 5 || r[4] == "" {
			continue
		}
		v, err := strconv.ParseFloat(r[4], 64)
		if err != nil {
			continue
		}
		k := key{r[0], r[1], r[3]}
		if _, seen := vals[key{r[0], r[1], ""}]; !seen {
			vals[key{r[0], r[1], ""}] = nil
			whoOrder[r[0]] = append(whoOrder[r[0]], r[1])
		}
		vals[k] = append(vals[k], v)
	}
	return vals, whoOrder
}

// perThousand estimates edged's RSS per 1,000 proxies from the smallest and
// the largest configuration with the same number of environments.
func perThousand(w io.Writer, vals map[key][]float64) {
	type pt struct {
		proxies  int
		idle, ld float64
	}
	byEnvs := map[int][]pt{}
	for k, v := range vals {
		if k.scen != "reloadcost" || k.metric != "rss_idle_mib" {
			continue
		}
		var p, e int
		if _, err := fmt.Sscanf(k.who, "%dp_%de", &p, &e); err != nil {
			continue
		}
		idle, _, _ := stats(v)
		var ld float64
		if l := vals[key{"reloadcost", k.who, "rss_load_mib"}]; len(l) > 0 {
			ld, _, _ = stats(l)
		}
		byEnvs[e] = append(byEnvs[e], pt{p, idle, ld})
	}
	var envs []int
	for e := range byEnvs {
		envs = append(envs, e)
	}
	sort.Ints(envs)
	for _, e := range envs {
		pts := byEnvs[e]
		sort.Slice(pts, func(i, j int) bool { return pts[i].proxies < pts[j].proxies })
		if len(pts) < 2 {
			continue
		}
		a, b := pts[0], pts[len(pts)-1]
		d := float64(b.proxies-a.proxies) / 1000
		fmt.Fprintf(w, "- %d environments: RSS idle %.1f MiB at %d proxies → %.1f MiB at %d proxies: **%.2f MiB per 1,000 proxies idle**", e, a.idle, a.proxies, b.idle, b.proxies, (b.idle-a.idle)/d)
		if a.ld > 0 && b.ld > 0 {
			fmt.Fprintf(w, ", %.2f MiB per 1,000 under load", (b.ld-a.ld)/d)
		}
		fmt.Fprintln(w, ".")
	}
	fmt.Fprintln(w)
}
