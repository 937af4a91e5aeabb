package gitrepo

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Remote is one repository of a git asset.
type Remote struct {
	// URL is what git fetches from: a URL (https://, ssh://, git://,
	// file://), scp-like user@host:path, or an absolute local path. It may
	// hold credentials: print Redacted instead.
	URL string
	// Name is the repository's name in the snapshot (stored and restored
	// as Name.git), unique within the asset.
	Name string
}

// Redacted is the URL without its password or token.
func (r Remote) Redacted() string { return RedactURL(r.URL) }

// LoadRemotes is the asset's list of remotes: list, then the lines of
// file ("" for none), in order, exact duplicates once, each with its
// unique name. A missing or unreadable file, a line that is not a remote,
// or no remote at all is an error.
func LoadRemotes(list []string, file string) ([]Remote, error) {
	urls := append([]string(nil), list...)
	for _, u := range list {
		if err := checkRemote(u); err != nil {
			return nil, err
		}
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("remotes_file: %w", err)
		}
		more, err := ParseRemotesFile(data)
		if err != nil {
			return nil, fmt.Errorf("remotes_file %s:%w", file, err)
		}
		urls = append(urls, more...)
	}
	if len(urls) == 0 {
		if file != "" {
			return nil, fmt.Errorf("no remotes to back up: remotes_file %s lists none", file)
		}
		return nil, fmt.Errorf("no remotes to back up")
	}
	return nameRemotes(urls)
}

// ParseRemotesFile reads a remotes file: one URL or absolute path per
// line; blank lines and lines starting with # are skipped, and so is a
// comment after whitespace (" # ..."), which no URL contains. An error
// starts with the line number.
func ParseRemotesFile(data []byte) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i == 0 || (i > 0 && (line[i-1] == ' ' || line[i-1] == '\t')) {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("%d: %q is not one remote (one URL or path per line)", n, RedactText(line))
		}
		if err := checkRemote(line); err != nil {
			return nil, fmt.Errorf("%d: %w", n, err)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf(" %w", err)
	}
	return out, nil
}

// checkRemote accepts what git would fetch from without guessing: a URL
// with a scheme, an scp-like address, or an absolute path.
func checkRemote(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty remote")
	case strings.HasPrefix(s, "-"):
		// git would read it as an option.
		return fmt.Errorf("remote %q starts with '-'", RedactText(s))
	case strings.ContainsAny(s, "\x00\n\r"):
		return fmt.Errorf("remote %q holds a control character", RedactText(s))
	case transportPrefix.MatchString(s):
		// git's "<transport>::<address>" runs a remote helper:
		// ext:: runs any command the address names.
		return fmt.Errorf("remote %q: git's <transport>::<address> form (ext::, fd::, ...) is refused: it can run a command on this host; give a URL, user@host:path or an absolute path", RedactText(s))
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("remote %q: not a valid URL", RedactText(s))
		}
		return checkURL(s, u)
	case filepath.IsAbs(s):
		return nil
	}
	if i := strings.Index(s, ":"); i > 0 && !strings.Contains(s[:i], "/") {
		return nil // user@host:path, as git and ssh write it
	}
	return fmt.Errorf("remote %q: want a URL, user@host:path or an absolute path", RedactText(s))
}

// transportPrefix matches git's "<transport>::<address>" syntax.
var transportPrefix = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+.-]*::`)

// checkURL accepts the transports git may use (allowedProtocols): file,
// git, ssh (also git+ssh and ssh+git) and https. Credentials are kept in
// an https URL only: git hands them to the server through a credential
// helper; a password in any other URL would sit on git's command line and
// is used by nothing.
func checkURL(s string, u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "https":
		if u.User != nil {
			user := u.User.Username()
			pass, _ := u.User.Password()
			if strings.ContainsAny(user+pass, "\x00\n\r") {
				return fmt.Errorf("remote %q: its user or password holds a control character", RedactText(s))
			}
		}
		return nil
	case "http":
		return fmt.Errorf("remote %q: plain http is refused (credentials and code would cross the network unprotected): use https", RedactText(s))
	case "file", "git", "ssh", "git+ssh", "ssh+git":
		if _, has := u.User.Password(); u.User != nil && has {
			return fmt.Errorf("remote %q: a password in a %s URL is not used by git and would show on its command line: remove it (ssh authenticates with keys)", RedactText(s), u.Scheme)
		}
		return nil
	}
	return fmt.Errorf("remote %q: transport %s is not one git may use here (file, git, ssh, https)", RedactText(s), u.Scheme)
}

// nameRemotes gives each remote a name from the last element of its path.
// Remotes whose names would collide (compared without case, so restores
// onto case-insensitive file systems stay apart) all get a suffix from a
// hash of their redacted URL: stable whatever order the list is in, so a
// repository keeps its name and its mirror from night to night.
func nameRemotes(urls []string) ([]Remote, error) {
	seen := map[string]bool{}
	var rs []Remote
	for _, u := range urls {
		if seen[u] {
			continue
		}
		seen[u] = true
		rs = append(rs, Remote{URL: u, Name: baseName(u)})
	}
	count := map[string]int{}
	for _, r := range rs {
		count[strings.ToLower(r.Name)]++
	}
	for i := range rs {
		if count[strings.ToLower(rs[i].Name)] > 1 {
			sum := sha256.Sum256([]byte(rs[i].Redacted()))
			rs[i].Name += "-" + hex.EncodeToString(sum[:4])
		}
	}
	final := map[string]string{}
	for _, r := range rs {
		key := strings.ToLower(r.Name)
		if other, ok := final[key]; ok {
			return nil, fmt.Errorf("remotes %s and %s are the same repository (only credentials differ) or their names collide", other, r.Redacted())
		}
		final[key] = r.Redacted()
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	return rs, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// baseName is the repository name a remote's path ends in, without .git:
// https://host/org/web.git, /srv/git/web.git, /srv/web/.git and
// git@host:org/web all give "web".
func baseName(remote string) string {
	p := remote
	if strings.Contains(p, "://") {
		if u, err := url.Parse(p); err == nil {
			p = u.Path
		}
	} else if !filepath.IsAbs(p) {
		if _, after, ok := strings.Cut(p, ":"); ok {
			p = after
		}
	}
	p = strings.TrimRight(p, "/")
	p = strings.TrimSuffix(p, "/.git")
	name := strings.TrimSuffix(path.Base(p), ".git")
	name = unsafeName.ReplaceAllString(name, "_")
	// No hidden or relative names: "." and ".." must not reach a path.
	name = strings.TrimLeft(name, ".")
	if name == "" {
		name = "repo"
	}
	return name
}

// RedactURL hides the secret part of a remote: the password of any URL,
// and for http(s) and ftp(s) the whole user part, which is often a token.
// The user of an ssh URL (git@, ssh://git@) is no secret and stays.
func RedactURL(s string) string {
	return userinfo.ReplaceAllStringFunc(s, redactMatch)
}

// RedactText redacts every URL in a message, as git's own errors may
// quote the remote whole.
func RedactText(s string) string { return RedactURL(s) }

var userinfo = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*)://([^/?#@\s'"]*)@`)

func redactMatch(m string) string {
	sub := userinfo.FindStringSubmatch(m)
	scheme, info := strings.ToLower(sub[1]), sub[2]
	user, _, hasPass := strings.Cut(info, ":")
	switch {
	case hasPass:
		return sub[1] + "://" + user + ":***@"
	case strings.HasPrefix(scheme, "http") || strings.HasPrefix(scheme, "ftp"):
		return sub[1] + "://***@"
	}
	return m
}
