package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWalSegNo(t *testing.T) {
	const mb16 = 16 << 20
	tests := []struct {
		name    string
		segSize int64
		want    uint64
		ok      bool
	}{
		{"000000010000000000000001", mb16, 1, true},
		{"0000000200000001000000FF", mb16, 256 + 255, true},
		{"000000010000000A00000003.00000028.backup", mb16, 10*256 + 3, true},
		{"000000010000000000000100", mb16, 0, false}, // segment beyond 0xFF for 16 MiB
		{"000000010000000000000100", 1 << 22, 256, true},
		{"00000001.history", mb16, 0, false},
		{"", mb16, 0, false},
		{"0000000G0000000000000001", mb16, 0, false},
		{"000000010000000000000001", 3 << 20, 0, false}, // not a power of two
	}
	for _, tt := range tests {
		got, ok := walSegNo(tt.name, tt.segSize)
		if got != tt.want || ok != tt.ok {
			t.Errorf("walSegNo(%q, %d) = %d, %v; want %d, %v", tt.name, tt.segSize, got, ok, tt.want, tt.ok)
		}
	}
}

func TestWalLag(t *testing.T) {
	const mb16 = 16 << 20
	tests := []struct {
		last, cur string
		want      int64
	}{
		{"000000010000000000000009", "00000001000000000000000A", 0},
		{"000000010000000000000005", "00000001000000000000000A", 4},
		{"0000000100000000000000FF", "000000010000000100000001", 1},
		{"00000001000000000000000A", "00000001000000000000000A", 0}, // switched segment archived at once
		{"", "00000001000000000000000A", -1},
	}
	for _, tt := range tests {
		if got := walLag(tt.last, tt.cur, mb16); got != tt.want {
			t.Errorf("walLag(%q, %q) = %d, want %d", tt.last, tt.cur, got, tt.want)
		}
	}
}

func TestParsePushLog(t *testing.T) {
	log := "100 200 0 000000010000000000000001\n" +
		"\n" +
		"300 900 1 000000010000000000000002\n" +
		"garbage line\n" +
		"400 300 0 000000010000000000000003\n" + // end before start
		"1000 5000 0 000000010000000000000002.00000028.backup\n"
	recs, bad, err := parsePushLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if bad != 2 {
		t.Errorf("bad = %d, want 2", bad)
	}
	want := []pushRecord{
		{100, 200, 0, "000000010000000000000001"},
		{300, 900, 1, "000000010000000000000002"},
		{1000, 5000, 0, "000000010000000000000002.00000028.backup"},
	}
	if !slices.Equal(recs, want) {
		t.Errorf("records = %+v, want %+v", recs, want)
	}
}

func TestSummarisePushes(t *testing.T) {
	var recs []pushRecord
	for i := int64(1); i <= 100; i++ { // 1 ms .. 100 ms
		recs = append(recs, pushRecord{StartNS: i * 1e9, EndNS: i*1e9 + i*1e6, File: "0000000100000000000000" + "0A"})
	}
	recs = append(recs,
		pushRecord{StartNS: 50e9, EndNS: 50e9 + 1, ExitCode: 3, File: "00000001000000000000000B"}, // failure: counted, not timed
		pushRecord{StartNS: 500e9, EndNS: 501e9, File: "00000001000000000000000C"},                // outside the window
	)
	st := summarisePushes(recs, 1e9, 100e9)
	if st.Invocations != 101 || st.Segments != 100 || st.Failures != 1 {
		t.Errorf("counts = %+v", st)
	}
	if st.MedianMS != 50 || st.P99MS != 99 || st.MaxMS != 100 || st.MeanMS != 50.5 {
		t.Errorf("latency = median %v p99 %v max %v mean %v, want 50 99 100 50.5", st.MedianMS, st.P99MS, st.MaxMS, st.MeanMS)
	}
	if empty := summarisePushes(nil, 0, 1); empty != (walPushStats{}) {
		t.Errorf("empty = %+v", empty)
	}
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		vals []float64
		p    float64
		want float64
	}{
		{nil, 50, 0},
		{[]float64{7}, 99, 7},
		{[]float64{1, 2}, 50, 1},
		{[]float64{1, 2, 3, 4}, 99, 4},
		{[]float64{1, 2, 3, 4}, 0, 1},
	}
	for _, tt := range tests {
		if got := percentile(tt.vals, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tt.vals, tt.p, got, tt.want)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	// Field 2 may hold spaces and parentheses; fields are counted from the last ')'.
	line := "4242 (pg (worker) 1) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 555 123456789 3072 18446744073709551615"
	ppid, rss, ok := parseProcStat(line)
	if !ok || ppid != 17 || rss != 3072 {
		t.Errorf("parseProcStat = %d, %d, %v; want 17, 3072, true", ppid, rss, ok)
	}
	for _, bad := range []string{"", "1 (x) S", "1 x S 2 3"} {
		if _, _, ok := parseProcStat(bad); ok {
			t.Errorf("parseProcStat(%q) ok, want failure", bad)
		}
	}
}

func TestTreeRSSCountsChildren(t *testing.T) {
	self := os.Getpid()
	alone := treeRSS(self)
	if alone <= 0 {
		t.Fatalf("treeRSS(self) = %d, want > 0", alone)
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	// Right after fork the child may not have touched any page yet.
	var childPages int64
	for deadline := time.Now().Add(5 * time.Second); childPages == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		if _, childPages, ok = parseProcStat(string(b)); !ok {
			t.Fatalf("child stat unparsable: %q", b)
		}
	}
	if childPages == 0 {
		t.Fatal("child never became resident")
	}
	if with := treeRSS(self); with < childPages*int64(os.Getpagesize())/1024 || with <= alone/2 {
		t.Errorf("treeRSS with a child = %d KiB; alone %d KiB, child %d pages", with, alone, childPages)
	}
	if got := treeRSS(1 << 30); got != 0 {
		t.Errorf("treeRSS(no such pid) = %d, want 0", got)
	}
}

func TestToolOrder(t *testing.T) {
	tests := []struct {
		tools, order string
		want         []string
		wantErr      bool
	}{
		{"pgbackrest,lifeboat", "pgbackrest,lifeboat", []string{"pgbackrest", "lifeboat"}, false},
		{"pgbackrest,lifeboat", "lifeboat,pgbackrest", []string{"lifeboat", "pgbackrest"}, false},
		{"lifeboat", "pgbackrest,lifeboat", []string{"lifeboat"}, false},
		{"pgbackrest", "lifeboat", []string{"pgbackrest"}, false}, // order may name only some
		{"walg", "", nil, true},
		{"", "", nil, true},
	}
	for _, tt := range tests {
		got, err := toolOrder(tt.tools, tt.order)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("toolOrder(%q, %q) = %v, %v; want %v, err %v", tt.tools, tt.order, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestBatches(t *testing.T) {
	if got := batches(2_500_000, 1_000_000); !slices.Equal(got, []int64{1_000_000, 1_000_000, 500_000}) {
		t.Errorf("batches = %v", got)
	}
	if got := batches(0, 10); len(got) != 0 {
		t.Errorf("batches(0) = %v", got)
	}
}

func TestVocabulary(t *testing.T) {
	words := vocabulary()
	if len(words) < 190 || len(words) > 210 {
		t.Errorf("vocabulary has %d words, want about 200", len(words))
	}
	seen := map[string]bool{}
	for _, w := range words {
		if seen[w] {
			t.Errorf("duplicate word %q", w)
		}
		if strings.ContainsAny(w, `'\`) {
			t.Errorf("word %q needs SQL escaping", w)
		}
		seen[w] = true
	}
}

// TestWalPushWrapper runs the generated script under /bin/sh with stand-in
// push commands and checks what it logs and how it exits.
func TestWalPushWrapper(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "push log.txt") // a space exercises quoting
	tests := []struct {
		push   []string
		wantRC int
	}{
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "exit 7", "--"}, 7},
	}
	for _, tt := range tests {
		script := filepath.Join(dir, "wrapper.sh")
		if err := os.WriteFile(script, []byte(walPushWrapper(tt.push, nil, logPath)), 0o755); err != nil {
			t.Fatal(err)
		}
		err := exec.Command("/bin/sh", "-c", shellQuote(script)+" pg_wal/000000010000000000000001 000000010000000000000001").Run()
		rc := 0
		if ee, ok := err.(*exec.ExitError); ok {
			rc = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if rc != tt.wantRC {
			t.Errorf("push %v: exit %d, want %d", tt.push, rc, tt.wantRC)
		}
	}
	recs, bad, err := readPushLog(logPath)
	if err != nil || bad != 0 || len(recs) != 2 {
		t.Fatalf("log: %+v, bad %d, err %v", recs, bad, err)
	}
	if recs[0].ExitCode != 0 || recs[1].ExitCode != 7 || recs[0].File != "000000010000000000000001" {
		t.Errorf("records = %+v", recs)
	}
}

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"/usr/bin/pgbackrest":   "/usr/bin/pgbackrest",
		"--config=/a/b.conf":    "--config=/a/b.conf",
		"a b":                   "'a b'",
		"it's":                  `'it'\''s'`,
		"":                      "''",
		"$(rm -rf /)":           "'$(rm -rf /)'",
		"/var/tmp/x/bench_1.sh": "/var/tmp/x/bench_1.sh",
	}
	for in, want := range tests {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSummariseTargets(t *testing.T) {
	ok := func(wall float64, bytes int64, rss int64) stepResult {
		return stepResult{Ran: true, OK: true, WallSeconds: wall, Bytes: bytes, MaxRSSKiB: rss}
	}
	runs := []toolResult{
		{Tool: toolPgBackRest, Full: ok(100, 1000<<20, 30000), Incr: ok(40, 500<<20, 30000), Restore: ok(60, 0, 0)},
		{Tool: toolLifeboat, Full: ok(40, 900<<20, 200*1024), Incr: ok(30, 20<<20, 300*1024), Restore: stepResult{Ran: true}},
	}
	got := summarise(runs, storageFS)
	byName := map[string]ratioLine{}
	for _, l := range got {
		byName[l.Name] = l
	}
	checks := []struct {
		name           string
		measured, pass bool
		ratio          float64
	}{
		{"full backup: wall", true, true, 0.4},
		{"full backup: bytes", true, true, 0.9},
		{"incremental: bytes", true, true, 0.04},
		{"incremental: wall", true, false, 0.75},
		{"restore: wall", false, false, 0},
		{"peak RSS lifeboat backup", true, false, 0},
	}
	for _, c := range checks {
		l, found := byName[c.name]
		if !found {
			t.Errorf("missing line %q", c.name)
			continue
		}
		if l.Measured != c.measured || l.Pass != c.pass || (c.ratio != 0 && (l.Ratio < c.ratio-1e-9 || l.Ratio > c.ratio+1e-9)) {
			t.Errorf("%s: measured %v pass %v ratio %v; want %v %v %v (%s)", c.name, l.Measured, l.Pass, l.Ratio, c.measured, c.pass, c.ratio, l.Text)
		}
	}
	if l := byName["peak RSS lifeboat backup"]; l.Lifeboat != 300 {
		t.Errorf("peak RSS = %v MiB, want 300 (the larger of the two backups)", l.Lifeboat)
	}
	if l := byName["full backup: wall"]; !strings.HasPrefix(l.Text, "full backup: wall lifeboat 40.0 s / pgbackrest 100 s = 0.400 (target <= 0.5) PASS") {
		t.Errorf("text = %q", l.Text)
	}
}

func FuzzParsePushLine(f *testing.F) {
	f.Add("100 200 0 000000010000000000000001")
	f.Add("1 1 255 x")
	f.Add("")
	f.Fuzz(func(t *testing.T, line string) {
		rec, ok := parsePushLine(line)
		if ok && (rec.EndNS < rec.StartNS || rec.StartNS <= 0 || rec.File == "") {
			t.Errorf("accepted inconsistent record %+v from %q", rec, line)
		}
	})
}

func FuzzWalSegNo(f *testing.F) {
	f.Add("000000010000000000000001", int64(16<<20))
	f.Add("0000000100000001000000FF.partial", int64(1<<20))
	f.Fuzz(func(t *testing.T, name string, segSize int64) {
		n, ok := walSegNo(name, segSize)
		if !ok {
			return
		}
		// The number must map back to the log and segment parts of the name.
		perLog := uint64((1 << 32) / segSize)
		if got, want := fmt.Sprintf("%08X%08X", n/perLog, n%perLog), strings.ToUpper(name[8:24]); got != want {
			t.Errorf("walSegNo(%q, %d) = %d, which formats as %s", name, segSize, n, got)
		}
	})
}

func FuzzParseProcStat(f *testing.F) {
	f.Add("1 (init) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 1 1 100 1")
	f.Fuzz(func(t *testing.T, line string) {
		_, _, _ = parseProcStat(line) // must not panic
	})
}

// TestMain doubles as a helper process: with LBBENCH_ALLOC_MIB set, the test
// binary allocates that much, stays resident briefly and exits, giving
// TestRunnerMaxRSSIncludesGrandchildren a process of known size.
func TestMain(m *testing.M) {
	if v := os.Getenv("LBBENCH_ALLOC_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		b := make([]byte, n<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		time.Sleep(300 * time.Millisecond) // long enough for the 100 ms tree sampler
		fmt.Println(len(b))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunnerMaxRSSIncludesGrandchildren checks the rusage semantics the report
// depends on: a worker's peak reaches ru_maxrss through an intermediate shell
// that stays small, and the tree sampler sees it too.
func TestRunnerMaxRSSIncludesGrandchildren(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{env: append(os.Environ(), "LBBENCH_ALLOC_MIB=200")}
	// "; true" keeps sh from exec-ing the helper in place, so it is a grandchild.
	res, err := r.run(t.Context(), cmdSpec{path: "/bin/sh", sample: true,
		args: []string{"-c", shellQuote(self) + " >/dev/null; true"}})
	if err != nil {
		t.Fatalf("run: %v (stderr %s)", err, res.Stderr)
	}
	if res.MaxRSSKiB < 200*1024 {
		t.Errorf("MaxRSSKiB = %d, want >= %d (the grandchild's 200 MiB)", res.MaxRSSKiB, 200*1024)
	}
	if res.TreeRSSKiB < 200*1024 {
		t.Errorf("TreeRSSKiB = %d, want >= %d", res.TreeRSSKiB, 200*1024)
	}
	if res.Wall <= 0 || res.ExitCode != 0 {
		t.Errorf("wall %v exit %d", res.Wall, res.ExitCode)
	}

	res, err = r.run(t.Context(), cmdSpec{path: "/bin/sh", args: []string{"-c", "echo boom >&2; exit 3"}})
	if err == nil || res.ExitCode != 3 || !strings.Contains(err.Error(), "boom") {
		t.Errorf("failing command: err %v, exit %d", err, res.ExitCode)
	}
}
