package audit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)

// chain makes n records of a chain, each event of asset "db" or "web".
func chain(t *testing.T, id string, n int) []Record {
	t.Helper()
	var recs []Record
	var last uint64
	var h Hash
	for i := range n {
		asset := "db"
		if i%2 == 1 {
			asset = "web"
		}
		e := &Event{Time: t0.Add(time.Duration(i) * time.Minute), Start: t0, Type: TypeBackup, Asset: asset, Outcome: OK,
			Actor: Actor{User: "postgres", UID: 105, Host: "db1"}, Args: []string{"backup", asset}}
		r, err := Append(id, last, h, e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		last, h = r.Seq, r.Hash
	}
	return recs
}

// rechain recomputes every hash of recs, renumbering the events in
// their order: what someone with write access to the catalog, but not to
// the repository, can do after editing.
func rechain(t *testing.T, id string, recs []Record) []Record {
	t.Helper()
	var out []Record
	var last uint64
	var h Hash
	for _, r := range recs {
		e, err := Decode(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		nr, err := Append(id, last, h, e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, nr)
		last, h = nr.Seq, nr.Hash
	}
	return out
}

func verify(id string, recs []Record, seals []Located) *Break {
	v := NewVerifier(id)
	for i := range recs {
		if b := v.Add(&recs[i]); b != nil {
			break
		}
	}
	return v.Finish(seals)
}

func sealOf(t *testing.T, id string, recs []Record, from, head int, where string) Located {
	t.Helper()
	prev := Genesis(id)
	if from > 1 {
		prev = recs[from-2].Hash
	}
	s := MakeSeal(id, "db1", prev, recs[from-1:head], func(r *Record) bool { return strings.Contains(string(r.Body), `"asset":"db"`) })
	back, err := UnmarshalSeal(s.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	return Located{Where: where, Seal: back}
}

func TestIntactChainVerifies(t *testing.T) {
	t.Parallel()
	recs := chain(t, "c1", 20)
	seals := []Located{sealOf(t, "c1", recs, 1, 10, "repository a"), sealOf(t, "c1", recs, 11, 20, "repository a")}
	if b := verify("c1", recs, seals); b != nil {
		t.Fatalf("intact chain: %v", b)
	}
	if b := verify("c1", recs, nil); b != nil {
		t.Fatalf("intact chain without seals: %v", b)
	}
}

func TestVerifyNamesTheFirstBrokenLink(t *testing.T) {
	t.Parallel()
	const id = "c2"
	orig := chain(t, id, 12)
	seals := []Located{sealOf(t, id, orig, 1, 6, "repository a"), sealOf(t, id, orig, 7, 12, "repository b")}
	clone := func() []Record {
		out := make([]Record, len(orig))
		for i, r := range orig {
			r.Body = append([]byte(nil), r.Body...)
			out[i] = r
		}
		return out
	}
	edited := func(recs []Record, i int) []Record {
		recs[i].Body = []byte(strings.Replace(string(recs[i].Body), `"outcome":"ok"`, `"outcome":"failed"`, 1))
		return recs
	}
	tests := []struct {
		name   string
		recs   func() []Record
		seals  []Located
		seq    uint64
		reason string
	}{
		{"edited", func() []Record { return edited(clone(), 3) }, nil, 4, "stored hash"},
		{"edited and rehashed", func() []Record { return rechain(t, id, edited(clone(), 3)) }, seals, 4, "sealed in repository a"},
		{"edited late and rehashed", func() []Record { return rechain(t, id, edited(clone(), 9)) }, seals, 10, "sealed in repository b"},
		{"deleted", func() []Record { r := clone(); return append(r[:4], r[5:]...) }, nil, 5, "missing (deleted)"},
		{"deleted and renumbered", func() []Record { r := clone(); return rechain(t, id, append(r[:4], r[5:]...)) }, seals, 5, "sealed in"},
		{"reordered", func() []Record {
			r := clone()
			r[2], r[5] = r[5], r[2]
			r[2].Seq, r[5].Seq = 3, 6
			return r
		}, nil, 3, "reordered"},
		{"reordered and renumbered", func() []Record { r := clone(); r[2], r[5] = r[5], r[2]; return rechain(t, id, r) }, seals, 3, "sealed in"},
		{"rolled back", func() []Record { return clone()[:8] }, seals, 9, "missing on this host but sealed in repository b"},
		{"emptied", func() []Record { return nil }, seals, 1, "events 1..12 are missing"},
		{"foreign bytes", func() []Record { r := clone(); r[0].Body = []byte("{}"); return r }, nil, 1, "encoding was edited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := verify(id, tt.recs(), tt.seals)
			if b == nil {
				t.Fatal("not caught")
			}
			if b.Seq != tt.seq || !strings.Contains(b.Reason, tt.reason) {
				t.Fatalf("got %v, want event %d: ...%s...", b, tt.seq, tt.reason)
			}
		})
	}
}

func TestSealRoundTripAndTamper(t *testing.T) {
	t.Parallel()
	recs := chain(t, "c3", 5)
	s := MakeSeal("c3", "db1", Genesis("c3"), recs, func(r *Record) bool { return r.Seq != 2 })
	data := s.Marshal()
	back, err := UnmarshalSeal(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.Head != 5 || back.From != 1 || back.HeadHash != recs[4].Hash || back.Events[1].Body != nil || string(back.Events[2].Body) != string(recs[2].Body) {
		t.Fatalf("round trip: %+v", back)
	}
	if h, f, ok := ParseSealName(s.Name()); !ok || h != 5 || f != 1 {
		t.Fatalf("name %s: %d %d %v", s.Name(), h, f, ok)
	}
	bad := strings.Replace(string(data), `"outcome":"ok"`, `"outcome":"no"`, 1)
	if _, err := UnmarshalSeal([]byte(bad)); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("tampered body: %v", err)
	}
	if _, err := UnmarshalSeal(data[:len(data)-10]); err == nil {
		t.Fatal("truncated seal accepted")
	}
}

func TestSealsAloneVerify(t *testing.T) {
	t.Parallel()
	recs := chain(t, "c4", 30)
	other := chain(t, "c5", 3)
	seals := []Located{sealOf(t, "c4", recs, 1, 10, "a"), sealOf(t, "c4", recs, 11, 30, "a"), sealOf(t, "c4", recs, 21, 30, "b"),
		sealOf(t, "c5", other, 1, 3, "a")}
	reps := VerifySeals(seals)
	if len(reps) != 2 {
		t.Fatalf("%d chains", len(reps))
	}
	c4 := reps[0]
	if c4.Chain != "c4" || c4.Break != nil || len(c4.Covered) != 1 || c4.Covered[0] != [2]uint64{1, 30} || c4.Seals != 3 || c4.Host != "db1" {
		t.Fatalf("c4: %+v", c4)
	}
	// Two seals of one chain that disagree: only a key holder could write
	// them, and verify says where.
	forged := rechain(t, "c4", append(append([]Record(nil), recs[:4]...), recs[5:]...))
	seals = append(seals, sealOf(t, "c4", forged, 1, 12, "c"))
	if rep := VerifySeals(seals)[0]; rep.Break == nil || rep.Break.Seq != 5 {
		t.Fatalf("conflicting seals: %+v", rep.Break)
	}
}

func TestBodySeq(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]uint64{`{"seq":1,"x":2}`: 1, `{"seq":18446744073709551615,`: 1<<64 - 1} {
		if got, err := BodySeq([]byte(body)); err != nil || got != want {
			t.Errorf("%s: %d %v", body, got, err)
		}
	}
	for _, body := range []string{``, `{"seq":,`, `{"seq":12`, ` {"seq":1,`, `{"seq":-1,`} {
		if _, err := BodySeq([]byte(body)); err == nil {
			t.Errorf("%q accepted", body)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	r := NewRedactor("hunter2hunter2", "0123456789abcdef0123456789abcdef", "x")
	args := []string{
		"restore", "db", "--dsn", "host=db user=app password=s3cr3t dbname=x",
		"postgres://app:pa55word@db:5432/x", "--password", "topsecret", "--token=tok123",
		"--passphrase=hunter2hunter2", "s3://b/p?secret_key=AKIAXYZ&region=x",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----",
		"key 0123456789abcdef0123456789abcdef", "PGPASSWORD=pgpw", "AGE-SECRET-KEY-1QQQQQQQQQ", "password='with space'",
	}
	got := strings.Join(r.Args(args), "\n")
	for _, secret := range []string{"s3cr3t", "pa55word", "topsecret", "tok123", "hunter2", "AKIAXYZ", "b3BlbnNzaC1rZXkt",
		"0123456789abcdef", "pgpw", "QQQQQQQQQ", "with space"} {
		if strings.Contains(got, secret) {
			t.Errorf("%q left in:\n%s", secret, got)
		}
	}
	for _, kept := range []string{"restore", "db", "--dsn", "host=db user=app", "postgres://app:", "@db:5432/x", "--password", "region=x"} {
		if !strings.Contains(got, kept) {
			t.Errorf("%q redacted too:\n%s", kept, got)
		}
	}
	e := &Event{Error: "connect postgres://u:pw1234@h/db: failed", Details: map[string]string{"dsn": "password=abc123"}}
	r.Event(e)
	if strings.Contains(e.Error, "pw1234") || strings.Contains(e.Details["dsn"], "abc123") {
		t.Fatalf("event: %+v", e)
	}
}

func TestWALBatchOneEventPerMinute(t *testing.T) {
	t.Parallel()
	b := OpenWALBatch(t.TempDir(), "db")
	var got []*Event
	commit := func(e *Event) error { got = append(got, e); return nil }
	actor := Actor{User: "postgres", UID: 105, Host: "db1", Keys: map[string]string{"primary": "keys/abc"}}
	for i, name := range []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003"} {
		var err error
		if i == 1 {
			err = errors.New("store: boom\twith tab")
		}
		if err := b.Push(t0.Add(time.Duration(i)*10*time.Second), actor, name, err, commit); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 0 {
		t.Fatalf("a minute not over made %d events", len(got))
	}
	if err := b.Flush(t0.Add(59*time.Second), commit); err != nil || len(got) != 0 {
		t.Fatalf("flush within the minute: %v, %d events", err, len(got))
	}
	if err := b.Push(t0.Add(70*time.Second), actor, "000000010000000000000004", nil, commit); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d events", len(got))
	}
	e := got[0]
	if e.Type != TypeWALPush || e.Asset != "db" || e.Outcome != Failed || e.Details["pushes"] != "3" || e.Details["failed"] != "1" ||
		e.Details["first"] != "000000010000000000000001" || e.Details["last"] != "000000010000000000000003" ||
		!strings.Contains(e.Error, "boom with tab") || e.Actor.UID != 105 || e.Actor.Keys["primary"] != "keys/abc" || !e.Start.Equal(t0) {
		t.Fatalf("event: %+v", e)
	}
	// A commit that fails keeps the pushes for the next try.
	failing := func(*Event) error { return errors.New("catalog locked") }
	if err := b.Flush(t0.Add(3*time.Minute), failing); err == nil {
		t.Fatal("failed commit not reported")
	}
	if err := b.Flush(t0.Add(3*time.Minute), commit); err != nil || len(got) != 2 || got[1].Details["pushes"] != "1" {
		t.Fatalf("after a failed commit: %v, %d events", err, len(got))
	}
	if err := b.Flush(t0.Add(4*time.Minute), commit); err != nil || len(got) != 2 {
		t.Fatalf("empty batch: %v, %d events", err, len(got))
	}
}

func TestExportFormats(t *testing.T) {
	t.Parallel()
	recs := chain(t, "c6", 2)
	for _, format := range []string{FormatJSONL, FormatCSV} {
		var sb strings.Builder
		x, err := NewExporter(&sb, format)
		if err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			e, _ := Decode(recs[i].Body)
			if err := x.Write(&recs[i], e); err != nil {
				t.Fatal(err)
			}
		}
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(sb.String()), "\n")
		switch format {
		case FormatJSONL:
			// The export alone recomputes the chain.
			h := Genesis("c6")
			for _, l := range lines {
				h = Link(h, Digest([]byte(l)))
			}
			if len(lines) != 2 || h != recs[1].Hash {
				t.Fatalf("jsonl does not recompute the chain: %q", lines)
			}
		case FormatCSV:
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "seq,time,") || !strings.Contains(lines[2], recs[1].Hash.String()) {
				t.Fatalf("csv: %q", lines)
			}
		}
	}
	if _, err := NewExporter(&strings.Builder{}, "xml"); err == nil {
		t.Fatal("xml accepted")
	}
}

func TestSourceFromEnv(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if s := SourceFromEnv(env(map[string]string{"SSH_CONNECTION": "203.0.113.9 51234 10.0.0.1 22"})); s.SSH != "203.0.113.9:51234" {
		t.Errorf("SSH_CONNECTION: %+v", s)
	}
	if s := SourceFromEnv(env(map[string]string{"SSH_CLIENT": "2001:db8::1 40000 22"})); s.SSH != "[2001:db8::1]:40000" {
		t.Errorf("SSH_CLIENT: %+v", s)
	}
	if s := SourceFromEnv(env(nil)); s != (Source{}) {
		t.Errorf("no SSH: %+v", s)
	}
}
