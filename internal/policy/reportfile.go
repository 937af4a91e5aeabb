package policy

import "time"

// ReportFile is the policy's report section (docs/report.md): where serve
// keeps the DR report current. Path is "" when the policy has no such
// section, and serve then writes none. In a fleet, the leader alone
// writes it, covering every host.
type ReportFile struct {
	Path string
	// Format is md, html or json.
	Format string
	// Since is how far back the report reaches (0: everything recorded).
	Since time.Duration
	Line  int
}

type reportFileYAML struct {
	Path   string `yaml:"path"`
	Format string `yaml:"format"`
	Since  string `yaml:"since"`
}

// reportFile reads the report section; a relative path is resolved
// against the policy file's directory, as state_dir is.
func (c *converter) reportFile(raw *reportFileYAML) ReportFile {
	const path = "report"
	rf := ReportFile{Format: "html", Line: c.idx.line(path, 0)}
	if raw == nil {
		return rf
	}
	rf.Path = c.outputPath(path, rf.Line, raw.Path, "the DR report", "/var/lib/lifeboat/dr-report.html")
	if f := c.expand(path+".format", raw.Format); f != "" {
		switch f {
		case "md", "html", "json":
			rf.Format = f
		default:
			c.fail(path+".format", rf.Line, "format must be md, html or json")
		}
	}
	if s := c.expand(path+".since", raw.Since); s != "" {
		d, err := ParseDuration(s)
		if err != nil || d <= 0 {
			c.fail(path+".since", rf.Line, "since must be a duration back from now, e.g. 90d")
		}
		rf.Since = d
	}
	return rf
}
