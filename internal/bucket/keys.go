package bucket

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Where an object lives in a snapshot's tree.
//
// An object key can hold any byte sequence (S3 itself asks for UTF-8, but
// not every store does): "..", a leading "/", "//", a trailing "/" (a
// "directory marker"), control characters. None of it may reach a tree
// path as it is, and tree paths must sort as the keys do, so that a
// backup can walk the listing (which the store gives in key order) and
// the parent snapshot's tree side by side, in bounded memory.
//
// The object with key prefix+K (K relative to the asset's prefix) is the
// tree node data/E(K), where E writes every byte below 0x30 (control
// characters, space and !"#$%&'()*+,-./) as %XX, two upper-case hex
// digits, and every other byte as itself. E keeps order: every escaped
// byte is below every literal one, so is its escape character '%'
// (0x25), and %XX sorts as XX does; and E(K) is never empty, "." or "..",
// and holds neither "/" nor NUL. The object whose relative key is empty
// (a marker named like the prefix itself) is the node "data". The per
// object metadata follows all objects, in the file node metadata.jsonl
// ('d' < 'm').
const (
	dataNode = "data"
	metaNode = "metadata.jsonl"
)

// treePath is the tree path of the object with relative key k.
func treePath(k string) string {
	if k == "" {
		return dataNode
	}
	var b strings.Builder
	b.Grow(len(dataNode) + 1 + len(k) + 8)
	b.WriteString(dataNode)
	b.WriteByte('/')
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c < 0x30 {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

// errNotObject marks a tree path that is not one treePath writes.
var errNotObject = errors.New("not an object's tree path")

// keyOf is the inverse of treePath. It accepts only what treePath writes,
// so that two tree paths never stand for one key.
func keyOf(p string) (string, error) {
	if p == dataNode {
		return "", nil
	}
	e, ok := strings.CutPrefix(p, dataNode+"/")
	if !ok || e == "" {
		return "", fmt.Errorf("%q: %w", p, errNotObject)
	}
	out := make([]byte, 0, len(e))
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch {
		case c == '%':
			if i+2 >= len(e) {
				return "", fmt.Errorf("%q: truncated escape: %w", p, errNotObject)
			}
			v, ok := unhex(e[i+1], e[i+2])
			if !ok || v >= 0x30 {
				return "", fmt.Errorf("%q: bad escape %q: %w", p, e[i:i+3], errNotObject)
			}
			out = append(out, v)
			i += 2
		case c < 0x30:
			return "", fmt.Errorf("%q: unescaped byte %#x: %w", p, c, errNotObject)
		default:
			out = append(out, c)
		}
	}
	return string(out), nil
}

func unhex(a, b byte) (byte, bool) {
	h := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	x, ok1 := h(a)
	y, ok2 := h(b)
	return x<<4 | y, ok1 && ok2
}

// Where an object lands in a restore to a directory.
//
// The key (relative to the prefix) is cut at each "/" and every piece
// becomes a path element: a directory for all but the last, the file for
// the last. In each element '%' is written %25 and NUL %00; an empty
// element (a leading "/", "//", the trailing "/" of a directory marker)
// is written "%", and "." and ".." are written %2E and %2E%2E, so the
// path never leaves the target directory. An element at the top that
// starts with ".lifeboat-" starts with %2E instead, so that no object
// takes the name of the metadata file. When a file would take the name
// of a directory another key needs (the objects "a" and "a/b"), the file
// gets a "%" appended ("a%"): no escaped element ends in "%" but the
// empty one, so the name still reads back. To read a path back: cut the
// "%" from an element that ends in one and is longer than "%", then read
// "%" as empty and %XX as the byte XX.

// sidecarName is the file a directory restore writes the objects'
// metadata to, one JSON line per object.
const sidecarName = ".lifeboat-bucket-metadata.jsonl"

// maxElement is the longest file name Linux (and most file systems) take.
const maxElement = 255

// localElements are the escaped path elements of relative key k.
func localElements(k string) []string {
	parts := strings.Split(k, "/")
	for i, p := range parts {
		parts[i] = escapeElement(p, i == 0)
	}
	return parts
}

func escapeElement(p string, top bool) string {
	switch p {
	case "":
		return "%"
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '%':
			b.WriteString("%25")
		case c == 0:
			b.WriteString("%00")
		case c == '.' && i == 0 && top && strings.HasPrefix(p, ".lifeboat-"):
			b.WriteString("%2E")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// localPath is the slash-separated path below the restore directory of
// the object with relative key k; dirs holds every directory path (as
// localDirs gives them) of the objects restored, to find the files that
// must step aside.
func localPath(k string, dirs map[string]bool) (string, error) {
	els := localElements(k)
	for _, e := range els {
		if len(e)+1 > maxElement {
			return "", fmt.Errorf("key %s: the path element %.40q... is longer than a file name may be (%d bytes); restore to a bucket instead", quoteKey(k), e, maxElement)
		}
	}
	p := strings.Join(els, "/")
	if dirs[p] {
		p += "%"
	}
	return p, nil
}

// localDirs adds the directories the object with relative key k needs.
func localDirs(k string, dirs map[string]bool) {
	els := localElements(k)
	for i := 1; i < len(els); i++ {
		dirs[strings.Join(els[:i], "/")] = true
	}
}

// keyOfLocal reads a path localPath wrote back to its key.
func keyOfLocal(p string) (string, error) {
	els := strings.Split(p, "/")
	for i, e := range els {
		if len(e) > 1 && strings.HasSuffix(e, "%") {
			if i != len(els)-1 {
				return "", fmt.Errorf("%q: a directory element ends in %%", p)
			}
			e = e[:len(e)-1]
		}
		if e == "%" {
			els[i] = ""
			continue
		}
		var out []byte
		for j := 0; j < len(e); j++ {
			if e[j] != '%' {
				out = append(out, e[j])
				continue
			}
			if j+2 >= len(e) {
				return "", fmt.Errorf("%q: truncated escape", p)
			}
			v, ok := unhex(e[j+1], e[j+2])
			if !ok {
				return "", fmt.Errorf("%q: bad escape %q", p, e[j:j+3])
			}
			out = append(out, v)
			j += 2
		}
		els[i] = string(out)
	}
	return strings.Join(els, "/"), nil
}

// quoteKey writes a key for a message or a listing: as it is when it is
// printable UTF-8 without spaces at its ends, else Go-quoted.
func quoteKey(k string) string {
	if k != "" && utf8.ValidString(k) && strings.TrimSpace(k) == k && !strings.ContainsFunc(k, func(r rune) bool {
		return r < 0x20 || r == 0x7f || r == utf8.RuneError
	}) {
		return k
	}
	return fmt.Sprintf("%q", k)
}

// underPath reports whether relative key k is selected by a --path
// selection sel: the key itself, or a key below it when sel ends in "/"
// or names a "directory" (sel + "/" is a prefix of k).
func underPath(k, sel string) bool {
	if sel == "" || k == sel {
		return true
	}
	if strings.HasSuffix(sel, "/") {
		return strings.HasPrefix(k, sel)
	}
	return strings.HasPrefix(k, sel+"/")
}
