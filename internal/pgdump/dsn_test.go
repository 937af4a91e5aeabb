package pgdump

import (
	"strings"
	"testing"
)

func TestParseDSN(t *testing.T) {
	tests := []struct {
		in       string
		want     string // String() after replacing dbname with "other" and dropping the password
		password string
	}{
		{"host=/run/postgresql dbname=app user=postgres",
			`host='/run/postgresql' dbname='other' user='postgres'`, ""},
		{"host=db password=s3cret dbname=app",
			`host='db' dbname='other'`, "s3cret"},
		{"host = db  port= 5433 application_name='a b'",
			`host='db' port='5433' application_name='a b' dbname='other'`, ""},
		{`password='it\'s a \\secret' user=x`,
			`user='x' dbname='other'`, `it's a \secret`},
		{`user=we\ ird`, `user='we ird' dbname='other'`, ""},
		{"", `dbname='other'`, ""},
		{"postgresql://", `dbname='other'`, ""},
		{"postgresql://alice:pa%40ss@db.example.com:6432/app?sslmode=require&application_name=lb",
			`user='alice' host='db.example.com' port='6432' dbname='other' sslmode='require' application_name='lb'`, "pa@ss"},
		{"postgres://h1:5432,h2,[::1]:5433/my%2Fdb?target_session_attrs=read-write",
			`host='h1,h2,::1' port='5432,,5433' dbname='other' target_session_attrs='read-write'`, ""},
		{"postgresql://%2Fvar%2Frun%2Fpostgresql/app", `host='/var/run/postgresql' dbname='other'`, ""},
		{"postgresql:///app?host=/tmp&password=x&dbname=b", `dbname='other' host='/tmp'`, "x"},
		{"postgresql://u@h?ssl=true", `user='u' host='h' sslmode='require' dbname='other'`, ""},
	}
	for _, tt := range tests {
		p, err := parseDSN(tt.in)
		if err != nil {
			t.Errorf("parseDSN(%q): %v", tt.in, err)
			continue
		}
		got, pass := p.with("dbname", "other").withoutPassword()
		if got.String() != tt.want || pass != tt.password {
			t.Errorf("parseDSN(%q) = %s (password %q), want %s (password %q)", tt.in, got, pass, tt.want, tt.password)
		}
		// What String renders reads back the same.
		again, err := parseDSN(got.String())
		if err != nil || again.String() != got.String() {
			t.Errorf("round trip of %s: %v %s", got, err, again)
		}
	}
}

func TestParseDSNErrors(t *testing.T) {
	for _, in := range []string{"host", "host=db password='unterminated", "password='it''s'", "postgresql://[::1/db", "postgresql://h/db?flag",
		"postgresql://h/%zz"} {
		_, err := parseDSN(in)
		if err == nil {
			t.Errorf("parseDSN(%q) accepted it", in)
			continue
		}
		if strings.Contains(err.Error(), "unterminated") && strings.Contains(err.Error(), "'unterminated") {
			t.Errorf("parseDSN(%q): the error quotes the value: %v", in, err)
		}
	}
}

func TestDisplayHidesSecrets(t *testing.T) {
	p, err := parseDSN("host=db port=5432 user=u dbname='my db' password=hunter2 sslpassword=x sslkey=/k")
	if err != nil {
		t.Fatal(err)
	}
	got := p.display()
	if got != `host=db port=5432 user=u dbname='my db'` {
		t.Fatalf("display = %s", got)
	}
}

func TestFileName(t *testing.T) {
	for db, want := range map[string]string{
		"app": "app.dump", "My-App_2": "My-App_2.dump", "a/b": "a%2Fb.dump", "..": "%2E..dump",
		"näme": "n%C3%A4me.dump", "x y": "x%20y.dump", "%": "%25.dump",
	} {
		if got := fileName(db); got != want {
			t.Errorf("fileName(%q) = %q, want %q", db, got, want)
		}
	}
}
