package report

import (
	"io"
	"strings"
)

// writeMarkdown writes the report as GitHub-flavoured Markdown: headings,
// paragraphs and pipe tables. Every value is escaped, so that an asset name
// or an error message can neither break a table nor inject HTML into the
// rendered page.
func writeMarkdown(w io.Writer, r *Report) error {
	return writeMarkdownDocument(w, drawDocument(r))
}

func writeMarkdownDocument(w io.Writer, d document) error {
	var b strings.Builder
	b.WriteString("# " + mdText(d.Title) + "\n\n")
	for _, f := range d.Facts {
		b.WriteString("- **" + mdText(f.Name) + ":** " + mdText(f.Value) + "\n")
	}
	for _, s := range d.Sections {
		mdSection(&b, s, 2)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdSection(b *strings.Builder, s section, level int) {
	b.WriteString("\n" + strings.Repeat("#", level) + " " + mdText(s.Title) + "\n")
	for _, p := range s.Intro {
		b.WriteString("\n" + mdText(p) + "\n")
	}
	for _, t := range s.Tables {
		mdTable(b, t)
	}
	for _, p := range s.Notes {
		b.WriteString("\n" + mdText(p) + "\n")
	}
	for _, c := range s.Code {
		fence := "```"
		for strings.Contains(c, fence) {
			fence += "`"
		}
		b.WriteString("\n" + fence + "sh\n" + c + "\n" + fence + "\n")
	}
	for _, sub := range s.Subs {
		mdSection(b, sub, level+1)
	}
}

func mdTable(b *strings.Builder, t table) {
	if len(t.Rows) == 0 {
		b.WriteString("\n_" + mdText(t.Empty) + "_\n")
		return
	}
	b.WriteString("\n|")
	for _, h := range t.Head {
		b.WriteString(" " + mdText(h) + " |")
	}
	b.WriteString("\n|")
	for range t.Head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range t.Rows {
		b.WriteString("|")
		for _, c := range row {
			b.WriteString(" " + mdCell(c) + " |")
		}
		b.WriteString("\n")
	}
}

func mdCell(c cell) string {
	switch c.Mark {
	case bad:
		return "**" + mdText(c.Text) + "**"
	case code:
		// A code span shows the text as it is; only a pipe needs its
		// backslash there, since GFM splits cells before reading spans.
		if c.Text != "" && !strings.ContainsAny(c.Text, "`\r\n") {
			return "`" + strings.ReplaceAll(c.Text, "|", `\|`) + "`"
		}
	}
	return mdText(c.Text)
}

// mdEscaper backslash-escapes the characters that would start markup
// (emphasis, links, code, HTML, table cells) and folds line breaks, which
// would end a table row, into spaces.
var mdEscaper = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`,
	"<", `\<`, ">", `\>`, "|", `\|`, "~", `\~`, "&", `\&`, "#", `\#`,
	"\r\n", " ", "\n", " ", "\r", " ",
)

func mdText(s string) string { return mdEscaper.Replace(s) }
