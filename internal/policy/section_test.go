package policy

import (
	"reflect"
	"strings"
	"testing"
)

// readers is a kind whose keys exercise each reader of a Section.
type readers struct{}

type readersConfig struct {
	Text, Abs, File string
	List            []string
	Flag            bool
	Secret          Secret
}

func (readers) ConfigKeys() []string {
	return []string{"text", "abs", "file", "list", "flag", "secret"}
}

func (readers) DecodeConfig(s *Section) any {
	c := &readersConfig{Text: s.String("text"), Abs: s.AbsPath("abs"), File: s.File("file"), List: s.Strings("list"),
		Flag: s.Bool("flag", true), Secret: s.Secret("secret")}
	if c.Abs == "" {
		s.Errorf("abs", "abs is required")
	}
	return c
}

func parseReaders(t *testing.T, keys string) (*readersConfig, error) {
	t.Helper()
	p, err := parse([]byte(repoOK+`assets:
  - name: x
    kind: readers
    repositories: [primary]
`+keys), "lifeboat.yaml", "/etc/lifeboat", lookupIn(testEnv), Kinds{"readers": readers{}})
	if err != nil {
		return nil, err
	}
	return p.Assets[0].Config.(*readersConfig), nil
}

func TestSectionReaders(t *testing.T) {
	t.Parallel()
	got, err := parseReaders(t, `    text: &t "a ${WIKI_DB_PASSWORD} b"
    abs: /srv//data/
    file: ../keys/list.txt
    list: [one, *t, ~, "$$x"]
    flag: false
    secret: ${LIFEBOAT_PASSPHRASE}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := &readersConfig{Text: "a s3cr3t b", Abs: "/srv/data", File: "/etc/keys/list.txt",
		List: []string{"one", "a s3cr3t b", "", "$x"}, Flag: false, Secret: Secret(testEnv["LIFEBOAT_PASSPHRASE"])}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config %+v, want %+v", got, want)
	}
	// Written without a value reads as left out.
	if got, err := parseReaders(t, "    abs: /a\n    text:\n    flag:\n    list:\n"); err != nil || got.Text != "" || !got.Flag || got.List != nil {
		t.Errorf("empty values: %+v, %v", got, err)
	}
}

// TestSectionProblems: a problem of a kind's key names its line and field,
// and a key that could not be read gets no second problem from the kind.
func TestSectionProblems(t *testing.T) {
	t.Parallel()
	_, err := parseReaders(t, `    text: [a]
    abs: ${NOT_SET_IN_TESTS}
    file: {a: b}
    list:
      - ok
      - [nested]
    flag: maybe
    secret: pa$word
`)
	want := []string{
		`lifeboat.yaml:9: assets[0].text: expected a single value, found a list`,
		`lifeboat.yaml:10: assets[0].abs: environment variable NOT_SET_IN_TESTS is not set`,
		`lifeboat.yaml:11: assets[0].file: expected a single value, found a mapping`,
		`lifeboat.yaml:14: assets[0].list[1]: expected a single value, found a list`,
		`lifeboat.yaml:15: assets[0].flag: "maybe" is not true or false`,
		`lifeboat.yaml:16: assets[0].secret: "$" at character 3 must be written "$$" for a literal "$", or ${NAME} to insert an environment variable`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	_, err = parseReaders(t, "    abs: relative/./dir\n")
	if want := `lifeboat.yaml:9: assets[0].abs: abs "relative/dir" must be an absolute path`; err == nil || err.Error() != want {
		t.Errorf("relative path: %v, want %s", err, want)
	}
}
