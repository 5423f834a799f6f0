package edge

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"edged/internal/termsafe"
)

// The status page on the admin listener's /: rendered on the server from
// Status (readable without JavaScript), then refreshed by page.js from
// /status. Nothing is loaded from elsewhere. html/template escapes every
// value, and page.js puts values in as text: names and error messages
// come from files.
var (
	//go:embed statuspage/page.html statuspage/page.css statuspage/page.js statuspage/favicon.svg
	pageFiles    embed.FS
	pageTemplate = template.Must(template.New("page.html").Funcs(template.FuncMap{
		"when":      pageTime,
		"ago":       pageAgo,
		"rate":      func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
		"ms":        pageMillis,
		"join":      func(s []string) string { return strings.Join(s, ", ") },
		"rejected":  func(e EnvStatus) uint64 { return e.Pool.Rejected + e.Pool.TimedOut },
		"certClass": certClass,
		"spark":     sparkline,
	}).ParseFS(pageFiles, "statuspage/page.html"))
)

// pageAsset serves one embedded file of the page.
func pageAsset(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, pageFiles, "statuspage/"+name)
	}
}

// servePage renders the status page. It works on a Status taken once, so
// it holds no lock of the server or a pool while it renders; reads that
// come while it renders get that rendering (writeRendered).
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Only the page's own script and style run: a name from a file that
	// got past the escaping still could not load or run anything. No other
	// page may frame it (default-src does not cover frame-ancestors).
	// adminHeaders set no-store and nosniff.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	err := s.writeRendered(w, r, "page", func() ([]byte, error) {
		var buf bytes.Buffer
		if err := pageTemplate.Execute(&buf, s.Status()); err != nil {
			s.log.Error("status page", "error", err.Error())
			return nil, err
		}
		// Names from files (a certificate's, which x509 takes with control
		// characters; a file's, any byte but NUL and /): shown as the CLI
		// shows them. html/template escapes markup, not those, and the
		// escapes hold none.
		return termsafe.Visible(buf.Bytes()), nil
	})
	if err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
	}
}

// pageTime is how the page (and page.js) write a time.
func pageTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") + " UTC" }

// pageAgo says how long before now t was, in its largest whole unit.
func pageAgo(now, t time.Time) string {
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

func pageMillis(v float64) string {
	switch {
	case v <= 0:
		return "–"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
}

// certClass marks a certificate that expires soon: amber under 30 days,
// red under 14.
func certClass(daysLeft int) string {
	switch {
	case daysLeft < 14:
		return "crit"
	case daysLeft < 30:
		return "warn"
	}
	return ""
}

// spark is a sparkline's two polylines in a 180×32 box: the newest point
// on the right edge, each series scaled to its own highest value.
type spark struct {
	Req, P99, Title string
}

func sparkline(s *Series) spark {
	if s == nil {
		return spark{}
	}
	req, topReq := sparkPoints(s.RequestsPerSecond)
	p99, topP99 := sparkPoints(s.P99Ms)
	return spark{
		Req: req, P99: p99,
		Title: fmt.Sprintf("last 15 min, %d s a point: req/s up to %.1f, p99 up to %s", s.StepSeconds, topReq, pageMillis(float64(topP99))),
	}
}

func sparkPoints(vals []float32) (string, float32) {
	var top float32
	for _, v := range vals {
		top = max(top, v)
	}
	var b strings.Builder
	off := 180 - len(vals)
	for i, v := range vals {
		y := float32(31)
		if top > 0 {
			y = 31 - 30*v/top
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d,%.1f", off+i, y)
	}
	return b.String(), top
}
