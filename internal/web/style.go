package web

// styleCSS is the one style sheet, served from /style.css so that the
// Content-Security-Policy needs no inline style.
const styleCSS = `body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1b1b1b; }
header { display: flex; justify-content: space-between; align-items: center; background: #1f3a5f; padding: 0.5em 1.5em; }
header a, header span { color: #fff; margin-right: 1.2em; text-decoration: none; }
header form { margin: 0; }
main { padding: 1em 1.5em; }
footer { padding: 0 1.5em; color: #666; font-size: 0.8em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: left; vertical-align: top; }
th { background: #eef0f3; }
.good { color: #0a6b2d; }
.bad, .error, .alert { color: #a4000f; }
.dot { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 50%; margin-right: 0.4em; }
.dot-ok { background: #2e8540; } .dot-warning { background: #c77700; } .dot-failing { background: #c0262d; }
tr.state-failing { background: #fdecee; } tr.state-warning { background: #fff6e5; }
.state-ok { color: #0a6b2d; } .state-warning { color: #8a5300; } .state-failing { color: #a4000f; }
div.why { font-size: 0.85em; color: #444; max-width: 22em; }
form.filter label { margin-left: 0.8em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 0.5em 0; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; }
form.signin label { display: inline-block; width: 12em; }
`
