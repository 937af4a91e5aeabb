package policy

import (
	"path/filepath"
)

// Runbook is the policy's runbook section (docs/runbook.md): where serve
// keeps the generated runbook current. Path is "" when the policy has no
// such section, and serve then writes none.
type Runbook struct {
	Path string
	// Format is RunbookMarkdown or RunbookHTML.
	Format string
	Line   int
}

// Runbook formats.
const (
	RunbookMarkdown = "md"
	RunbookHTML     = "html"
)

type runbookYAML struct {
	Path   string `yaml:"path"`
	Format string `yaml:"format"`
}

// runbook reads the runbook section; a relative path is resolved against
// the policy file's directory, as state_dir is.
func (c *converter) runbook(raw *runbookYAML) Runbook {
	const path = "runbook"
	rb := Runbook{Format: RunbookMarkdown, Line: c.idx.line(path, 0)}
	if raw == nil {
		return rb
	}
	rb.Path = c.outputPath(path, rb.Line, raw.Path, "the runbook", "/var/lib/lifeboat/runbook.md")
	if f := c.expand(path+".format", raw.Format); f != "" {
		switch f {
		case RunbookMarkdown, RunbookHTML:
			rb.Format = f
		default:
			c.fail(path+".format", rb.Line, "format must be md or html")
		}
	}
	return rb
}

// outputPath reads the required path of a section naming a file serve
// keeps written (what, e.g. the runbook); a relative path is taken from
// the policy file's directory, as state_dir is.
func (c *converter) outputPath(section string, line int, value, what, example string) string {
	p := c.nonEmpty(section+".path", value)
	if p == "" && !c.idx.has(section+".path") {
		c.fail(section+".path", line, section+" needs path: the file serve keeps "+what+" in, e.g. "+example)
	}
	if p != "" && !filepath.IsAbs(p) {
		p = filepath.Join(c.base, p)
	}
	return p
}
