package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const secretValue = "hunter2-TOP-SECRET"

func TestSecretNeverPrinted(t *testing.T) {
	s := Secret(secretValue)
	repo := Repository{Name: "primary", URL: "file:///r", Passphrase: s, Line: 2}
	pol := &Policy{Source: "x.yaml", Repositories: []Repository{repo}}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-20v", "%T"} {
		for _, v := range []any{s, &s, repo, &repo, pol, []Secret{s}, map[string]Secret{"k": s}} {
			outputs = append(outputs, fmt.Sprintf(verb, v))
		}
	}
	outputs = append(outputs, s.String(), s.GoString(), fmt.Sprint(s), fmt.Sprintln(repo))

	for _, v := range []any{s, repo, pol} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		y, err := yaml.Marshal(v)
		if err != nil {
			t.Fatalf("yaml.Marshal(%T): %v", v, err)
		}
		outputs = append(outputs, string(j), string(y))
	}
	text, _ := s.MarshalText()
	outputs = append(outputs, string(text))

	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("text", "secret", s, "repo", repo)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("json", "secret", s, "repo", repo)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("any", slog.Any("secret", s))
	outputs = append(outputs, logs.String())

	for _, out := range outputs {
		if strings.Contains(out, secretValue) || strings.Contains(out, fmt.Sprintf("%x", secretValue)) {
			t.Errorf("secret leaked: %s", out)
		}
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", repo), fmt.Sprintf("%#v", repo), string(text)} {
		if !strings.Contains(out, redacted) {
			t.Errorf("%q does not show %s", out, redacted)
		}
	}
	if j, _ := json.Marshal(s); string(j) != `"**redacted**"` {
		t.Errorf("json = %s", j)
	}
	if s.Reveal() != secretValue {
		t.Errorf("Reveal() = %q", s.Reveal())
	}
}

// TestSecretNotInErrors puts a secret where it is wrong in every way the
// decoder and validator can complain about, and checks no message quotes it.
func TestSecretNotInErrors(t *testing.T) {
	docs := []string{
		"repositories: " + secretValue + "\n",
		"repositories:\n  - name: r\n    passphrase: [" + secretValue + "]\n",
		"repositories:\n  - name: r\n    passphrase: {" + secretValue + ": 1}\n",
		"repositories:\n  - name: r\n    passphrase: " + secretValue + "$x\n",
		"repositories:\n  - name: r\n    passphrase: ${" + secretValue + "\n",
		"repositories:\n  - name: r\n    passphrase: ${" + secretValue + "}\n",
		"repositories:\n  - name: r\n    passphrase: ${A:-" + secretValue + "}\n",
		"repositories:\n  - name: r\n    passphrase: " + secretValue + "\n    key_file: /k\n",
		"repositories:\n  - name: r\n    url: s3://AKIA:" + secretValue + "@bucket/x\n    key_file: /k\n",
		"repositories:\n  - name: r\n    url: file://u:" + secretValue + "@/x\n    key_file: /k\n",
		"tiers: " + secretValue + "\n",
		"assets:\n  - name: a\n    repositories: " + secretValue + "\n",
		"assets:\n  - name: a\n    dsn: [password=" + secretValue + "]\n",
		"assets: {a: 1}\n",
	}
	for _, doc := range docs {
		_, err := parseText(t, doc)
		if err == nil {
			t.Errorf("parse succeeded on:\n%s", doc)
			continue
		}
		if strings.Contains(err.Error(), secretValue) || strings.Contains(err.Error(), secretValue[:7]) {
			t.Errorf("error quotes the secret:\n%v\nfor:\n%s", err, doc)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"host=/tmp dbname=app", "host=/tmp dbname=app"},
		{"host=/tmp password=secret dbname=app", "host=/tmp password=**redacted** dbname=app"},
		{"host=/tmp password = 'a b\\' c' user=x", "host=/tmp password = **redacted** user=x"},
		{"password=", "password=**redacted**"},
		{"  sslpassword=k3y\tport=5432 ", "  sslpassword=**redacted**\tport=5432 "},
		{"user=o\\ brien password=p\\ w", "user=o\\ brien password=**redacted**"},
		{"password='unterminated", redacted},
		{"not a dsn", redacted},
		{"postgres://user:secret@db.example:5432/app?sslmode=require", "postgres://user:**redacted**@db.example:5432/app?sslmode=require"},
		{"postgresql://user@db/app", "postgresql://user@db/app"},
		{"postgres://db/app?password=secret&sslmode=require#x", "postgres://db/app?password=**redacted**&sslmode=require#x"},
		{"POSTGRES://u:p@a,b:5433/app", "POSTGRES://u:**redacted**@a,b:5433/app"},
		{"postgres://u:p@ss@host/app", "postgres://u:**redacted**@host/app"},
		{"postgres://", "postgres://"},
	}
	for _, tt := range tests {
		if got := RedactDSN(tt.in); got != tt.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestS3CredentialsAreSecrets(t *testing.T) {
	t.Setenv("LB_TEST_S3_SECRET", "s3-secret-value")
	p, err := Parse([]byte(`repositories:
  - name: primary
    url: s3://backups/ledger?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=true
    access_key: lifeboat
    secret_key: ${LB_TEST_S3_SECRET}
    passphrase: correct horse battery
assets:
  - name: ledger
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [primary]
`), "lifeboat.yaml", testKinds)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Repositories[0]
	if r.SecretKey.Reveal() != "s3-secret-value" || r.AccessKey.Reveal() != "lifeboat" {
		t.Fatalf("credentials not read: %q %q", r.AccessKey.Reveal(), r.SecretKey.Reveal())
	}
	if s := fmt.Sprintf("%v %+v %#v", r, r, r); strings.Contains(s, "s3-secret-value") {
		t.Fatalf("secret printed: %s", s)
	}
}
