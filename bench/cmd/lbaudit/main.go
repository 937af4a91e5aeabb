// Command lbaudit measures what the audit trail costs (docs/audit.md):
//
//	lbaudit verify -lifeboat BIN [-events 2000000] [-assets 50] [-seal-every 500]
//
// writes a year of simulated events for 50 assets into a catalog, sealed
// into a file repository every seal-every events as actions seal them,
// and times `lifeboat audit verify` over them (the target: under 30 s on
// the 2-core machine).
//
//	lbaudit overhead -lifeboat BIN -baseline BIN [-segments 64] [-backups 7]
//
// pushes the same real WAL segments (from a throwaway PostgreSQL) with a
// lifeboat built without the audit hook (baseline) and with it, side by
// side, alternating, each into its own repository, and takes full backups
// of the same files the same way; it prints the medians (targets: wal-push
// within 5 %, backup within 2 %). A minute of archiving ends every
// -per-minute pushes (--clock-offset), so the pushes that record and seal
// a minute's event are among those measured. Run it as a user other than
// root: the PostgreSQL server runs as the caller.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lbaudit verify|overhead [flags]")
		os.Exit(2)
	}
	ctx := context.Background()
	var err error
	switch os.Args[1] {
	case "verify":
		err = runVerify(ctx, os.Args[2:])
	case "overhead":
		err = runOverhead(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: verify or overhead", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lbaudit:", err)
		os.Exit(1)
	}
}

// newRepository makes a file repository with a new key file in dir.
func newRepository(ctx context.Context, dir string) (*repo.Repository, string, error) {
	key := filepath.Join(dir, "repo.key")
	if err := repo.GenerateKeyFile(key); err != nil {
		return nil, "", err
	}
	root := filepath.Join(dir, "repo")
	if err := fs.Create(root); err != nil {
		return nil, "", err
	}
	be, err := fs.Open(root, fs.Options{})
	if err != nil {
		return nil, "", err
	}
	sec, err := repo.KeyFile(key)
	if err != nil {
		return nil, "", err
	}
	if _, err := repo.Init(ctx, be, sec, repo.InitOptions{}); err != nil {
		return nil, "", err
	}
	r, err := repo.Open(ctx, be, sec, nil)
	return r, key, err
}

func runVerify(ctx context.Context, args []string) error {
	f := flag.NewFlagSet("verify", flag.ExitOnError)
	bin := f.String("lifeboat", "", "the lifeboat binary to time")
	events := f.Int("events", 2_000_000, "events to simulate")
	assets := f.Int("assets", 50, "assets they are spread over")
	sealEvery := f.Int("seal-every", 500, "events per seal")
	runs := f.Int("runs", 3, "verify runs")
	keep := f.Bool("keep", false, "keep the directory")
	f.Parse(args)
	if *bin == "" {
		return fmt.Errorf("-lifeboat is required")
	}
	dir, err := os.MkdirTemp("", "lbaudit-verify-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	r, key, err := newRepository(ctx, dir)
	if err != nil {
		return err
	}
	defer r.Close()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o700); err != nil {
		return err
	}
	var pol strings.Builder
	fmt.Fprintf(&pol, "state_dir: %s\nrepositories:\n  - name: primary\n    url: file://%s\n    key_file: %s\nassets:\n",
		filepath.Join(dir, "state"), filepath.Join(dir, "repo"), key)
	for i := range *assets {
		fmt.Fprintf(&pol, "  - name: asset%02d\n    kind: files\n    paths: [%q]\n    repositories: [primary]\n", i, src)
	}
	policyPath := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(policyPath, []byte(pol.String()), 0o600); err != nil {
		return err
	}
	cat, err := catalog.Open(ctx, catalog.Path(filepath.Join(dir, "state")))
	if err != nil {
		return err
	}
	chain, err := cat.AuditChain(ctx)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	year := 365 * 24 * time.Hour
	start := time.Now().Add(-year).UTC()
	genStart := time.Now()
	prev := audit.Genesis(chain)
	const batch = 20_000
	seals := 0
	for done := 0; done < *events; {
		n := min(batch, *events-done)
		recs, err := cat.AppendAudit(ctx, func(chain string, last uint64, h audit.Hash) ([]audit.Record, error) {
			out := make([]audit.Record, 0, n)
			for i := range n {
				k := done + i
				e := simulated(k, *assets, start.Add(time.Duration(int64(year)/int64(*events)*int64(k))), host)
				rec, err := audit.Append(chain, last, h, e)
				if err != nil {
					return nil, err
				}
				out = append(out, rec)
				last, h = rec.Seq, rec.Hash
			}
			return out, nil
		})
		if err != nil {
			return err
		}
		for j := 0; j < len(recs); j += *sealEvery {
			part := recs[j:min(j+*sealEvery, len(recs))]
			s := audit.MakeSeal(chain, host, prev, part, func(*audit.Record) bool { return true })
			if err := r.PutAuditSeal(ctx, chain, s.Name(), s.Marshal(), time.Time{}); err != nil {
				return err
			}
			prev = s.HeadHash
			seals++
		}
		done += n
	}
	head, _, err := cat.AuditHead(ctx)
	if err != nil {
		return err
	}
	if err := cat.SetAuditSealed(ctx, r.Config().ID, head, time.Now()); err != nil {
		return err
	}
	cat.Close()
	fmt.Printf("generated %d events for %d assets, %d seals, in %.1f s; catalog %s, repository %s\n", *events, *assets, seals,
		time.Since(genStart).Seconds(), size(catalog.Path(filepath.Join(dir, "state"))), size(filepath.Join(dir, "repo")))
	var secs []float64
	for i := range *runs {
		cold := dropCaches()
		t := time.Now()
		out, err := exec.Command(*bin, "-c", policyPath, "audit", "verify").CombinedOutput()
		d := time.Since(t).Seconds()
		if err != nil {
			return fmt.Errorf("audit verify: %v\n%s", err, out)
		}
		if i == 0 {
			fmt.Print(string(out))
		}
		secs = append(secs, d)
		fmt.Printf("audit verify run %d: %.2f s (%s)\n", i+1, d, cold)
	}
	fmt.Printf("audit verify over %d events: median %.2f s (target < 30 s)\n", *events, median(secs))
	return nil
}

// simulated is event k of a year: mostly minutes of archiving, a nightly
// backup per asset, now and then a verify, an expire and its deletions, a
// drill, a restore.
func simulated(k, assets int, t time.Time, host string) *audit.Event {
	a := fmt.Sprintf("asset%02d", k%assets)
	e := &audit.Event{Time: t, Start: t.Add(-2 * time.Second), Asset: a, Outcome: audit.OK,
		Actor:  audit.Actor{User: "postgres", UID: 105, Host: host, Keys: map[string]string{"primary": "keys/3f2a9c1d7b6e5a4f3f2a9c1d7b6e5a4f3f2a9c1d7b6e5a4f3f2a9c1d7b6e5a4f"}},
		Source: audit.Source{}}
	switch k % 40 {
	case 0:
		e.Type, e.Args = audit.TypeBackup, []string{"-c", "/etc/lifeboat/lifeboat.yaml", "backup", a}
		e.Snapshot, e.Repository = fmt.Sprintf("%064x", k), "primary"
		e.Details = map[string]string{"snapshot_type": "incremental"}
	case 1:
		e.Type, e.Asset, e.Repository = audit.TypeVerify, "", "primary"
		e.Args = []string{"-c", "/etc/lifeboat/lifeboat.yaml", "verify", "--repository", "primary"}
		e.Details = map[string]string{"problems": "0", "wal_files": "1440"}
	case 2:
		e.Type, e.Args = audit.TypeDrill, []string{"-c", "/etc/lifeboat/lifeboat.yaml", "drill", a}
		e.Source = audit.Source{SSH: "203.0.113.7:50122"}
		e.Details = map[string]string{"drill": "20261205T030000Z-1a2b3c4d", "passed": "true"}
	default:
		e.Type, e.Args = audit.TypeWALPush, []string{"wal-push", a}
		e.Details = map[string]string{"pushes": "3", "failed": "0", "first": "000000010000001A000000F1", "last": "000000010000001A000000F3"}
	}
	return e
}

func size(path string) string {
	var n int64
	filepath.Walk(path, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	if fi, err := os.Stat(path + "-wal"); err == nil {
		n += fi.Size()
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func runOverhead(ctx context.Context, args []string) error {
	f := flag.NewFlagSet("overhead", flag.ExitOnError)
	bin := f.String("lifeboat", "", "lifeboat with the audit hook")
	base := f.String("baseline", "", "lifeboat without it")
	segments := f.Int("segments", 64, "WAL segments to push with each")
	perMinute := f.Int("per-minute", 16, "pushes in each simulated minute")
	backups := f.Int("backups", 7, "full backups with each")
	dataMiB := f.Int("data-mib", 256, "size of the files backed up")
	f.Parse(args)
	if *bin == "" || *base == "" {
		return fmt.Errorf("-lifeboat and -baseline are required")
	}
	dir, err := os.MkdirTemp("", "lbaudit-overhead-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	segs, pgdata, err := makeSegments(ctx, dir, *segments)
	if err != nil {
		return err
	}
	src := filepath.Join(dir, "src")
	if err := makeFiles(src, *dataMiB); err != nil {
		return err
	}
	type side struct {
		name, bin, policy  string
		push, backup       []float64 // wall, ms
		pushCPU, backupCPU []float64 // user + system, ms
	}
	sides := []*side{{name: "baseline", bin: *base}, {name: "audit", bin: *bin}}
	for _, s := range sides {
		d := filepath.Join(dir, s.name)
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
		s.policy = filepath.Join(d, "lifeboat.yaml")
		pol := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: file://%s
    key_file: %s
assets:
  - name: db
    kind: postgres
    pgdata: %s
    dsn: "host=/nonexistent dbname=postgres"
    repositories: [primary]
  - name: files
    kind: files
    paths: [%q]
    repositories: [primary]
`, filepath.Join(d, "state"), filepath.Join(d, "repo"), filepath.Join(d, "repo.key"), pgdata, src)
		if err := os.WriteFile(s.policy, []byte(pol), 0o600); err != nil {
			return err
		}
		if out, err := exec.Command(s.bin, "-c", s.policy, "repo", "init").CombinedOutput(); err != nil {
			return fmt.Errorf("%s repo init: %v\n%s", s.name, err, out)
		}
	}
	// run returns the wall and CPU time of one command, in ms: on a
	// machine others share, CPU time is what the hook adds, wall time
	// what the archiver waits.
	run := func(s *side, args ...string) (float64, float64, error) {
		t := time.Now()
		cmd := exec.Command(s.bin, append([]string{"-c", s.policy}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, 0, fmt.Errorf("%s %v: %v\n%s", s.name, args, err, out)
		}
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return time.Since(t).Seconds() * 1000, cpu.Seconds() * 1000, nil
	}
	for i, seg := range segs {
		offset := fmt.Sprintf("--clock-offset=%dm", i / *perMinute)
		order := sides
		if i%2 == 1 {
			order = []*side{sides[1], sides[0]}
		}
		for _, s := range order {
			ms, cpu, err := run(s, offset, "wal-push", "db", seg)
			if err != nil {
				return err
			}
			s.push, s.pushCPU = append(s.push, ms), append(s.pushCPU, cpu)
		}
	}
	for i := range *backups {
		order := sides
		if i%2 == 1 {
			order = []*side{sides[1], sides[0]}
		}
		for _, s := range order {
			ms, cpu, err := run(s, "backup", "files", "--full")
			if err != nil {
				return err
			}
			if i > 0 { // the first stores the data; the others read it all and store what changed (nothing)
				s.backup, s.backupCPU = append(s.backup, ms), append(s.backupCPU, cpu)
			}
		}
	}
	b, a := sides[0], sides[1]
	fmt.Printf("wal-push, %d segments each (a minute ends every %d): baseline median %.1f ms (p90 %.1f), audit median %.1f ms (p90 %.1f): %+.1f %% (target within 5 %%)\n",
		len(segs), *perMinute, median(b.push), percentile(b.push, 0.9), median(a.push), percentile(a.push, 0.9), 100*(median(a.push)/median(b.push)-1))
	fmt.Printf("wal-push CPU: baseline median %.1f ms, audit median %.1f ms: %+.1f %%\n",
		median(b.pushCPU), median(a.pushCPU), 100*(median(a.pushCPU)/median(b.pushCPU)-1))
	fmt.Printf("backup --full of %d MiB of files, %d each: baseline median %.0f ms, audit median %.0f ms: %+.1f %% (target within 2 %%)\n",
		*dataMiB, len(b.backup), median(b.backup), median(a.backup), 100*(median(a.backup)/median(b.backup)-1))
	fmt.Printf("backup CPU: baseline median %.0f ms, audit median %.0f ms: %+.1f %%\n",
		median(b.backupCPU), median(a.backupCPU), 100*(median(a.backupCPU)/median(b.backupCPU)-1))
	ev, err := exec.Command(a.bin, "-c", a.policy, "--clock-offset=1h", "audit").CombinedOutput()
	if err != nil {
		return fmt.Errorf("audit: %v\n%s", err, ev)
	}
	fmt.Printf("events recorded by the audited side: %d\n", strings.Count(string(ev), "\n")-1)
	return nil
}

// makeSegments runs a throwaway PostgreSQL that archives with cp and
// returns n segments it archived, and its data directory.
func makeSegments(ctx context.Context, dir string, n int) ([]string, string, error) {
	b, err := pgbin.Find(ctx, 0)
	if err != nil {
		return nil, "", err
	}
	arch := filepath.Join(dir, "archive")
	sock := filepath.Join(dir, "s")
	for _, d := range []string{arch, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, "", err
		}
	}
	s := &pgbin.Server{Bin: b, DataDir: filepath.Join(dir, "pgdata"), SocketDir: sock, LogFile: filepath.Join(dir, "pg.log")}
	if err := s.Init(ctx, pgbin.InitOptions{Conf: map[string]string{"archive_mode": "on", "wal_level": "replica",
		"archive_command": "cp %p " + arch + "/%f"}}); err != nil {
		return nil, "", err
	}
	if err := s.Start(ctx); err != nil {
		return nil, "", err
	}
	defer s.Stop(context.WithoutCancel(ctx))
	conn, err := s.Connect(ctx, "postgres")
	if err != nil {
		return nil, "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		return nil, "", err
	}
	for range n {
		if _, err := conn.Exec(ctx, "INSERT INTO t SELECT generate_series(1, 1000)"); err != nil {
			return nil, "", err
		}
		if _, err := conn.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
			return nil, "", err
		}
	}
	var segs []string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ents, _ := os.ReadDir(arch)
		segs = segs[:0]
		for _, e := range ents {
			if len(e.Name()) == 24 {
				segs = append(segs, filepath.Join(arch, e.Name()))
			}
		}
		if len(segs) >= n {
			slices.Sort(segs)
			return segs[:n], s.DataDir, nil
		}
	}
	return nil, "", fmt.Errorf("only %d segments archived", len(segs))
}

// makeFiles writes mib MiB of incompressible files under dir.
func makeFiles(dir string, mib int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := range mib / 4 {
		f, err := os.Create(filepath.Join(dir, "f"+strconv.Itoa(i)))
		if err != nil {
			return err
		}
		for range 4 {
			rand.Read(buf)
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// dropCaches empties the page cache before a timed run, as the benchmark
// rules ask (root only), and says which it was.
func dropCaches() string {
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return "page cache kept: not root"
	}
	return "page cache dropped"
}
