package usage

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/smart"
)

// PathPrefix is where the report pages are mounted (/usage/report).
const PathPrefix = "/usage"

// cookieName holds the administrator's access token between report pages
// (HttpOnly, SameSite=Strict, Path /usage/, at most an hour).
const cookieName = "fhirgate_usage"

// Verifier checks an access token (the server's SMART verifier).
type Verifier func(ctx context.Context, token string) (*smart.Principal, error)

// ReportHandler serves GET /usage/report, an HTML report with an inline
// SVG chart (no script, no external resource; CSP like the authorization
// server's pages). The caller proves the same right as $usage (Allowed)
// with an access token: "Authorization: Bearer" on the request, or pasted
// once in the page's form (POST), after which a SameSite=Strict HttpOnly
// cookie carries it for the token's lifetime (an hour at most). verify
// nil: authorization is disabled and the page is open.
func (s *Service) ReportHandler(verify Verifier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src '"+styleHash+"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		switch r.URL.Path {
		case PathPrefix + "/report":
		case PathPrefix + "/logout":
			if r.Method != http.MethodPost {
				http.Error(w, "use POST", http.StatusMethodNotAllowed)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: PathPrefix + "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, PathPrefix+"/report", http.StatusSeeOther)
			return
		default:
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
			http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		token := ""
		fromForm := false
		if r.Method == http.MethodPost {
			if o := r.Header.Get("Origin"); o != "" && o != "null" && !sameOrigin(o, r) {
				http.Error(w, "cross-origin form refused", http.StatusForbidden)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := r.ParseForm(); err != nil {
				http.Error(w, "bad form", http.StatusBadRequest)
				return
			}
			q = r.PostForm
			token, fromForm = strings.TrimSpace(r.PostForm.Get("token")), true
		}
		if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && token == "" {
			token = strings.TrimSpace(t)
		}
		if c, err := r.Cookie(cookieName); err == nil && token == "" {
			token = c.Value
		}
		page := reportPage{Start: q.Get("start"), End: q.Get("end"), Granularity: q.Get("granularity"), Path: PathPrefix + "/report"}
		if verify != nil {
			if token == "" {
				s.render(w, http.StatusOK, page) // the sign-in form
				return
			}
			p, err := verify(r.Context(), token)
			if err != nil || !Allowed(p) {
				page.Error = "This access token is not valid or lacks system/AuditEvent.rs (or user/AuditEvent.rs for a practitioner)."
				http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: PathPrefix + "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
				w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate"`)
				s.render(w, http.StatusUnauthorized, page)
				return
			}
			page.SignedIn = true
			if fromForm {
				age := time.Hour
				if !p.ExpiresAt.IsZero() {
					age = min(age, time.Until(p.ExpiresAt))
				}
				if age > time.Second {
					http.SetCookie(w, &http.Cookie{Name: cookieName, Value: token, Path: PathPrefix + "/", MaxAge: int(age.Seconds()),
						HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
				}
			}
		}
		start, end := s.DefaultPeriod()
		gran := page.Granularity
		if gran == "" {
			gran = Day
		}
		var err error
		if page.Start != "" {
			t, ok := s.ParseDate(page.Start)
			if !ok {
				err = inputError("start must be a date (YYYY-MM-DD or YYYY-MM)")
			}
			start = t
		}
		if page.End != "" && err == nil {
			t, ok := s.ParseDate(page.End)
			if !ok {
				err = inputError("end must be a date (YYYY-MM-DD or YYYY-MM)")
			}
			end = t
		}
		var rep *Report
		if err == nil {
			rep, err = s.Compute(r.Context(), start, end, gran)
		}
		if err != nil {
			page.Error = err.Error()
			status := http.StatusBadRequest
			var bad InputError
			if !errors.As(err, &bad) {
				s.cfg.Logger.Error("usage: report failed", "err", err)
				page.Error, status = "The report could not be computed; see the server log.", http.StatusInternalServerError
			}
			s.render(w, status, page)
			return
		}
		page.fill(rep)
		s.render(w, http.StatusOK, page)
	})
}

func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// reportPage is the template's data.
type reportPage struct {
	Path, Start, End, Granularity, Error string
	SignedIn                             bool
	Report                               *Report
	Period, Source, Status               string
	Rows                                 []row
	Strata                               []stratumRow
	Chart                                *chart
}

type row struct {
	Code, Display string
	Value         int
}

type stratumRow struct {
	Label                                 string
	Active, Proxies, Messages, Results, B int
}

type chart struct {
	Width, Height, Base int
	Max                 int
	Bars                []bar
}

type bar struct {
	X, Y, W, H int
	Label      string
	Value      int
	ShowLabel  bool
}

func (p *reportPage) fill(r *Report) {
	p.Report = r
	p.Start, p.End, p.Granularity = r.Start.Format("2006-01-02"), r.End.Format("2006-01-02"), r.Granularity
	p.Period = r.Start.Format("2006-01-02") + " to " + r.End.AddDate(0, 0, -1).Format("2006-01-02") + " (inclusive)"
	p.Source = "accounts of the built-in authorization server"
	if r.Source == SourceAudit {
		p.Source = "distinct users seen in AuditEvents (the authorization server is external: no accounts)"
	}
	p.Status = "complete"
	if !r.Complete {
		p.Status = "pending: the period includes a day that still receives events"
	}
	for _, m := range measures {
		code, display := m.code, m.display
		if r.Source == SourceAudit {
			code, display = m.seenCode, m.seenDisplay
		}
		if code != "" {
			p.Rows = append(p.Rows, row{code, display, m.value(r.Total)})
		}
	}
	for _, s := range r.Strata {
		p.Strata = append(p.Strata, stratumRow{s.Label, s.Active, s.ActiveProxies, s.MessagesByPatients + s.MessagesByStaff, s.ResultsViewed, s.BookingsByPatients + s.BookingsByStaff})
	}
	// Active users per stratum, bars scaled to the largest.
	c := &chart{Width: 720, Height: 220, Base: 190, Max: 1}
	for _, s := range r.Strata {
		c.Max = max(c.Max, s.Active)
	}
	n := len(r.Strata)
	slot := (c.Width - 40) / max(n, 1)
	every := max(1, (n+11)/12) // at most 12 labels
	for i, s := range r.Strata {
		h := s.Active * 160 / c.Max
		c.Bars = append(c.Bars, bar{X: 40 + i*slot + slot/8, Y: c.Base - h, W: max(1, slot*3/4), H: h, Label: s.Label, Value: s.Active, ShowLabel: i%every == 0})
	}
	p.Chart = c
}

func (s *Service) render(w http.ResponseWriter, status int, p reportPage) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := reportTmpl.Execute(w, p); err != nil {
		s.cfg.Logger.Error("usage: report page", "err", err)
	}
}

const style = `body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
td.n{text-align:right}.err{color:#a00}form{margin:1rem 0}label{margin-right:1rem}svg{border:1px solid #ddd}`

var styleHash = func() string {
	sum := sha256.Sum256([]byte(style))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}()

var reportTmpl = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Portal usage</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + style + `</style></head><body>
<h1>Portal usage</h1>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<form method="post" action="{{.Path}}">
{{if not .SignedIn}}<p><label>Access token (system/AuditEvent.rs) <input type="password" name="token" autocomplete="off" required></label></p>{{end}}
<label>Start <input type="date" name="start" value="{{.Start}}"></label>
<label>End (exclusive) <input type="date" name="end" value="{{.End}}"></label>
<label>By <select name="granularity"><option value="day"{{if ne .Granularity "month"}} selected{{end}}>day</option><option value="month"{{if eq .Granularity "month"}} selected{{end}}>month</option></select></label>
<button type="submit">Show</button>
</form>
{{with .Report}}
<p>Period {{$.Period}}; status {{$.Status}}; registered users from {{$.Source}}. Generated {{.Generated.UTC.Format "2006-01-02 15:04:05"}} UTC.</p>
<h2>Active users per {{.Granularity}}</h2>
{{with $.Chart}}<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="Active users per period">
<line x1="40" y1="{{.Base}}" x2="{{.Width}}" y2="{{.Base}}" stroke="#888"/>
<text x="2" y="34" font-size="11" fill="#555">{{.Max}}</text><text x="2" y="{{.Base}}" font-size="11" fill="#555">0</text>
{{range .Bars}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="#2b6cb0"><title>{{.Label}}: {{.Value}}</title></rect>
{{if .ShowLabel}}<text x="{{.X}}" y="{{$.Chart.Base}}" dy="14" font-size="10" fill="#333">{{.Label}}</text>{{end}}
{{end}}</svg>{{end}}
<h2>Totals</h2>
<table><tr><th>Measure</th><th>Code</th><th>Value</th></tr>
{{range $.Rows}}<tr><td>{{.Display}}</td><td>{{.Code}}</td><td class="n">{{.Value}}</td></tr>
{{end}}</table>
<h2>By {{.Granularity}}</h2>
<table><tr><th>{{.Granularity}}</th><th>Active users</th><th>Active proxies</th><th>Messages</th><th>Results viewed</th><th>Bookings</th></tr>
{{range $.Strata}}<tr><td>{{.Label}}</td><td class="n">{{.Active}}</td><td class="n">{{.Proxies}}</td><td class="n">{{.Messages}}</td><td class="n">{{.Results}}</td><td class="n">{{.B}}</td></tr>
{{end}}</table>
{{end}}
{{if .SignedIn}}<form method="post" action="/usage/logout"><button type="submit">Sign out</button></form>{{end}}
</body></html>
`))
