package report

import (
	"html/template"
	"io"
)

// writeHTML writes the report as one self-contained page: inline CSS, no
// script, nothing fetched from elsewhere, so it opens the same offline, in
// a mail attachment or years later in an archive. html/template escapes
// every value. The markup is also well-formed XML (every element closed),
// which the tests check with encoding/xml.
func writeHTML(w io.Writer, r *Report) error {
	return pageTemplate.Execute(w, drawDocument(r))
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em; color: #1b1b1b; }
h1 { margin-bottom: 0.3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
h3 { margin-top: 1.5em; font-size: 1.05em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.facts dt { font-weight: bold; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef0f3; }
td.good { color: #0a6b2d; font-weight: bold; }
td.bad { color: #a4000f; background: #fdecee; font-weight: bold; }
p.empty { font-style: italic; color: #555; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; }
@media print { body { margin: 0; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<dl class="facts">
{{- range .Facts}}
<dt>{{.Name}}</dt><dd>{{.Value}}</dd>
{{- end}}
</dl>
{{- range .Sections}}
<section id="{{.ID}}">
<h2>{{.Title}}</h2>
{{- template "body" .}}
{{- range .Subs}}
<section id="{{.ID}}">
<h3>{{.Title}}</h3>
{{- template "body" .}}
</section>
{{- end}}
</section>
{{- end}}
</body>
</html>
{{define "body"}}
{{- range .Intro}}
<p>{{.}}</p>
{{- end}}
{{- range .Tables}}
{{- if .Rows}}
<table>
<thead><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Rows}}
<tr>{{range .}}<td{{with .Mark.Class}} class="{{.}}"{{end}}>{{if .Mark.Code}}<code>{{.Text}}</code>{{else}}{{.Text}}{{end}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p class="empty">{{.Empty}}</p>
{{- end}}
{{- end}}
{{- range .Notes}}
<p>{{.}}</p>
{{- end}}
{{- range .Code}}
<pre><code>{{.}}</code></pre>
{{- end}}
{{- end}}
`))
