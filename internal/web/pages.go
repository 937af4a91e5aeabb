package web

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

//go:embed templates/*.html
var templateFS embed.FS

// page is what every template gets.
type page struct {
	Title string
	User  string
	Role  Role
	CSRF  string
	Now   time.Time
	Data  any
	// Script loads the dashboard's one script (security keys).
	Script bool
	// OIDC is the OpenID Connect provider the sign-in page offers.
	OIDC string
	// Refresh is where the page moves on to by itself.
	Refresh string
}

var funcs = template.FuncMap{
	"stamp": stampText,
	"secs": func(v any) string {
		switch x := v.(type) {
		case *float64:
			if x == nil {
				return "-"
			}
			return seconds(*x)
		case float64:
			return seconds(x)
		}
		return "-"
	},
	"bytes":    bytesText,
	"list":     func(v ...string) []string { return v },
	"short":    shortID,
	"timeline": timeline,
	"bars":     drillBars,
	"can":      func(r Role, need string) bool { return r.Allows(Role(need)) },
	"met": func(b *bool) string {
		switch {
		case b == nil:
			return "-"
		case *b:
			return "met"
		}
		return "missed"
	},
}

// stampText is a time as pages show it (lifeboat.TimeLayout), "-" for none.
func stampText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return lifeboat.FormatTime(t)
}

// pages are parsed on first use rather than at package init, which every
// lifeboat process (wal-push included) would pay.
var pages = sync.OnceValue(func() map[string]*template.Template {
	m := map[string]*template.Template{}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	for _, name := range []string{"overview", "asset", "drills", "approvals", "audit", "signin", "error", "account", "continue"} {
		t := template.Must(layout.Clone())
		m[name] = template.Must(t.ParseFS(templateFS, "templates/"+name+".html"))
	}
	return m
})

// render writes a page whole, or an error when it fails to render: never
// half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	if c := whoOf(r); c.name != "" {
		p.User, p.Role, p.CSRF = c.name, c.role, c.csrf
	}
	p.Now = s.now()
	if p.Script {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	}
	var buf bytes.Buffer
	if err := pages()[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		s.log.Error("web: page failed to render", "page", name, "error", err)
		http.Error(w, "the page failed to render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// overviewData is the overview page: the rows, the filter and its
// choices.
type overviewData struct {
	*Overview
	Filter              Filter
	Hosts, Tiers, Kinds []string
	States              []string
	Counts              map[string]int
	Total               int
}

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request) {
	f := filterOf(r)
	all, err := s.overview(r.Context(), s.now())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	d := overviewData{Overview: &Overview{Generated: all.Generated, Repositories: all.Repositories, Assets: []AssetRow{}},
		Filter: f, States: []string{StateOK, StateWarning, StateFailing}, Counts: map[string]int{}, Total: len(all.Assets)}
	hosts, tiers, kinds := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i := range all.Assets {
		a := &all.Assets[i]
		hosts[a.Host], kinds[a.Kind] = true, true
		if a.Tier != "" {
			tiers[a.Tier] = true
		}
		d.Counts[a.State]++
		if f.keep(a) {
			d.Assets = append(d.Assets, *a)
		}
	}
	d.Hosts, d.Tiers, d.Kinds = sortedKeys(hosts), sortedKeys(tiers), sortedKeys(kinds)
	s.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Data: d})
}

func (s *Server) assetPage(w http.ResponseWriter, r *http.Request) {
	d, err := s.detailOf(r)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "asset", page{Title: d.Host + " / " + d.Name, Data: struct {
		*AssetDetail
		Backup string
	}{d, r.URL.Query().Get("backup")}})
}

func (s *Server) drillsPage(w http.ResponseWriter, r *http.Request) {
	ds, err := s.drills(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	// Bars for the newest drill of each asset: the chart compares assets.
	seen := map[string]bool{}
	var newest []DrillRow
	for _, d := range ds {
		if !seen[d.Asset] {
			seen[d.Asset] = true
			newest = append(newest, d.DrillRow)
		}
	}
	s.render(w, r, http.StatusOK, "drills", page{Title: "Drills", Data: struct {
		Drills []DrillView
		Newest []DrillRow
	}{ds, newest}})
}

func (s *Server) approvalsPage(w http.ResponseWriter, r *http.Request) {
	rows, err := s.svc.Approvals(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Request.Created.After(rows[j].Request.Created) })
	keys := s.wa != nil && whoOf(r).role.Allows(Approver)
	s.render(w, r, http.StatusOK, "approvals", page{Title: "Approvals", Script: keys, Data: struct {
		Rows       []app.ApprovalRow
		Configured bool
		WebAuthn   bool
		Approved   string
	}{rows, s.svc.Policy.Approvals != nil, keys, r.URL.Query().Get("approved")}})
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request) {
	v, err := s.audit(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "audit", page{Title: "Audit log", Data: v})
}
