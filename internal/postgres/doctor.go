package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

var _ asset.Doctor = kind{}

// Clock skew and pg_wal free space thresholds of doctor.
const (
	skewWarn    = 5 * time.Second
	skewFail    = 60 * time.Second
	walFreeWarn = 1 << 30 // bytes
	walFreePct  = 10
)

// Probes looks at what archiving and a backup depend on: the server's
// archive settings, pgdata, the clock, the room left in pg_wal, that the
// archiver's OS user can read the policy and keys, and (unless d.Quick)
// a WAL round trip from the server to every repository and back.
func (kind) Probes(ctx context.Context, d *asset.DoctorRun) []asset.Probe {
	a := d.Asset
	var out []asset.Probe
	add := func(name, status, msg, fix string) {
		out = append(out, asset.Probe{Asset: a.Name, Name: name, Status: status, Message: msg, Fix: fix})
	}
	cfg, err := ConfigOf(a)
	if err != nil {
		add(asset.ProbeServer, asset.ProbeFail, err.Error(), "set pgdata and dsn in the policy")
		return out
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(cctx, cfg.DSN)
	cancel()
	if err != nil {
		add(asset.ProbeServer, asset.ProbeFail, "cannot connect: "+oneLine(err), "check the dsn in the policy and that the server runs")
		return out
	}
	defer conn.Close(context.Background())
	si, err := QueryServerInfo(ctx, conn)
	if err != nil {
		add(asset.ProbeServer, asset.ProbeFail, oneLine(err), "")
		return out
	}
	add(asset.ProbeServer, asset.ProbeOK, "PostgreSQL "+si.Version+" reached", "")
	opts := BackupOptions{Asset: a.Name, PolicyPath: d.PolicyPath}
	archiving := false
	switch {
	case si.InRecovery:
		add(asset.ProbeArchiving, asset.ProbeWarn, "the server is a standby: archiving is judged on the primary", "")
	default:
		if err := checkArchiving(ctx, conn, opts, si); err != nil {
			add(asset.ProbeArchiving, asset.ProbeFail, oneLine(err), "archive_command = '"+archiveCommand(opts)+"'")
		} else {
			archiving = true
			add(asset.ProbeArchiving, asset.ProbeOK, fmt.Sprintf("archive_mode %s, archive_command archives into %s, the archiver is not failing", si.ArchiveMode, a.Name), "")
		}
	}
	if sameFile(cfg.PGData, si.DataDirectory) {
		add("pgdata", asset.ProbeOK, fmt.Sprintf("pgdata %s is the server's data_directory", cfg.PGData), "")
	} else {
		add("pgdata", asset.ProbeFail, fmt.Sprintf("pgdata %s is not the server's data_directory %s (as this host sees them)", cfg.PGData, si.DataDirectory),
			"set pgdata: "+si.DataDirectory+" in the policy, and run lifeboat on the server's host")
	}
	out = append(out, clockProbe(ctx, conn, a.Name))
	out = append(out, walSpaceProbe(cfg.PGData, a.Name))
	out = append(out, archiveUserProbes(cfg.PGData, a.Name, append([]string{d.PolicyPath}, d.Secrets...))...)
	switch {
	case d.Quick:
	case si.InRecovery:
		add("wal_round_trip", asset.ProbeWarn, "skipped: a standby cannot switch WAL", "run lifeboat doctor against the primary")
	case !archiving:
		add("wal_round_trip", asset.ProbeFail, "skipped: archiving is not set up (see the archiving probe)", "archive_command = '"+archiveCommand(opts)+"'")
	default:
		out = append(out, roundTrip(ctx, conn, d, si)...)
	}
	return out
}

// clockProbe compares the server's clock with this host's: recovery
// targets are server times, and the RPO is judged by this host's.
func clockProbe(ctx context.Context, conn *pgx.Conn, assetName string) asset.Probe {
	p := asset.Probe{Asset: assetName, Name: "clock"}
	before := time.Now()
	var server time.Time
	if err := conn.QueryRow(ctx, sqlNow).Scan(&server); err != nil {
		p.Status, p.Message = asset.ProbeFail, "read the server's clock: "+oneLine(err)
		return p
	}
	after := time.Now()
	local := before.Add(after.Sub(before) / 2)
	skew := server.Sub(local).Abs().Round(time.Millisecond)
	p.Message = fmt.Sprintf("the server's clock is %s from this host's", skew)
	switch {
	case skew > skewFail:
		p.Status = asset.ProbeFail
	case skew > skewWarn:
		p.Status = asset.ProbeWarn
	default:
		p.Status = asset.ProbeOK
		return p
	}
	p.Fix = "synchronise both clocks (chrony or systemd-timesyncd)"
	return p
}

// walSpaceProbe measures the room left where the server writes WAL: a
// full pg_wal stops the server, and WAL piles up there while archiving
// fails.
func walSpaceProbe(pgdata, assetName string) asset.Probe {
	p := asset.Probe{Asset: assetName, Name: "pg_wal_space"}
	dir := filepath.Join(pgdata, "pg_wal")
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		p.Status, p.Message = asset.ProbeFail, fmt.Sprintf("statfs %s: %v", dir, err)
		p.Fix = "run lifeboat doctor on the server's host, as a user that can read pgdata"
		return p
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	total := int64(st.Blocks) * int64(st.Bsize)
	pct := 0.0
	if total > 0 {
		pct = float64(free) * 100 / float64(total)
	}
	p.Message = fmt.Sprintf("%s free in %s (%.0f%%)", asset.HumanBytes(free), dir, pct)
	p.Status = asset.ProbeOK
	if free < walFreeWarn || pct < walFreePct {
		p.Status, p.Fix = asset.ProbeWarn, "make room on the file system of pg_wal: the server stops when it fills"
	}
	return p
}

// archiveUserProbes check that the OS user archive_command and
// restore_command run as (the owner of pgdata) can read the policy and
// the key files, going by their owners and modes.
func archiveUserProbes(pgdata, assetName string, files []string) []asset.Probe {
	fi, err := os.Stat(pgdata)
	if err != nil {
		return []asset.Probe{{Asset: assetName, Name: "archive_user", Status: asset.ProbeFail,
			Message: fmt.Sprintf("stat pgdata: %v", err), Fix: "run lifeboat doctor on the server's host"}}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	var out []asset.Probe
	for _, f := range files {
		if f == "" {
			continue
		}
		p := asset.Probe{Asset: assetName, Name: "archive_user"}
		if why := unreadableBy(f, st.Uid, st.Gid); why != "" {
			p.Status = asset.ProbeFail
			p.Message = fmt.Sprintf("the server's user (uid %d, the owner of pgdata) cannot read %s: %s", st.Uid, f, why)
			p.Fix = fmt.Sprintf("chown %d:%d %s, or run the server as its owner", st.Uid, st.Gid, f)
		} else {
			p.Status, p.Message = asset.ProbeOK, fmt.Sprintf("the server's user (uid %d) can read %s", st.Uid, f)
		}
		out = append(out, p)
	}
	return out
}

// unreadableBy says why uid (primary group gid) cannot read path, or ""
// when it can: the file must be readable and every directory above it
// searchable by that user (supplementary groups are not looked at).
func unreadableBy(path string, uid, gid uint32) string {
	if uid == 0 {
		return ""
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err.Error()
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if why := deniedTo(dir, uid, gid, 0o1); why != "" {
			return "the directory " + dir + " is " + why
		}
		if dir == filepath.Dir(dir) {
			break
		}
	}
	return deniedTo(abs, uid, gid, 0o4)
}

// deniedTo says why uid (group gid) lacks the permission bit (4 read, 1
// search) on path, or "".
func deniedTo(path string, uid, gid uint32, bit os.FileMode) string {
	fi, err := os.Stat(path)
	if err != nil {
		return err.Error()
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	mode := fi.Mode().Perm()
	var have os.FileMode
	switch {
	case st.Uid == uid:
		have = mode >> 6
	case st.Gid == gid:
		have = mode >> 3
	default:
		have = mode
	}
	if have&bit != 0 {
		return ""
	}
	return fmt.Sprintf("owned by uid %d gid %d with mode %04o", st.Uid, st.Gid, mode)
}

// roundTrip completes a WAL segment on the server, waits until the
// primary holds it, fetches it back and checks its header, then looks
// for it in the copies.
func roundTrip(ctx context.Context, conn *pgx.Conn, d *asset.DoctorRun, si ServerInfo) []asset.Probe {
	p := asset.Probe{Asset: d.Asset.Name, Name: "wal_round_trip"}
	fail := func(msg, fix string) []asset.Probe {
		p.Status, p.Message, p.Fix = asset.ProbeFail, msg, fix
		return []asset.Probe{p}
	}
	var xid int64
	if err := conn.QueryRow(ctx, sqlAssignXID).Scan(&xid); err != nil {
		return fail("write a transaction: "+oneLine(err), "")
	}
	var name string
	if err := conn.QueryRow(ctx, sqlSwitchWALFile).Scan(&name); err != nil {
		return fail("switch WAL: "+oneLine(err), "the role needs pg_switch_wal (superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() TO it)")
	}
	if len(d.Repos) == 0 || d.Repos[0].Repo == nil {
		return fail("switched out "+name+", but the primary repository could not be opened", "see the repository probe")
	}
	primary := d.Repos[0]
	p.Repository = primary.Name
	start := time.Now()
	deadline := start.Add(d.Wait)
	dest := filepath.Join(d.WorkDir, name)
	// The primary's first segment brings the asset's identity: until
	// then nothing is found, in whatever words.
	if err := awaitWAL(ctx, primary.Repo, d.Asset.Name, name, dest, deadline, func(error) bool { return true }); err != nil {
		why := oneLine(err)
		if errors.Is(err, ErrWALNotFound) {
			why = "not archived"
		}
		return fail(fmt.Sprintf("segment %s did not reach repository %s within %s (%s)", name, primary.Name, d.Wait, why),
			"look at pg_stat_archiver and the server log; run the archive_command by hand as the server's user")
	}
	if primary.Repo.CanReadContents(ctx) != nil {
		// A public-key repository on a host without its identity: the
		// segment is there, and sealed so that this host cannot read it.
		p.Status = asset.ProbeOK
		p.Message = fmt.Sprintf("segment %s switched out and archived to %s in %s (sealed to the repository's public key: not fetched back here)",
			name, primary.Name, time.Since(start).Round(time.Millisecond))
		return []asset.Probe{p}
	}
	if err := checkSegment(dest, name, si.WALSegmentSize); err != nil {
		return fail(fmt.Sprintf("segment %s fetched back from %s is wrong: %v", name, primary.Name, err), "run lifeboat verify")
	}
	p.Status = asset.ProbeOK
	p.Message = fmt.Sprintf("segment %s switched out, archived to %s and fetched back in %s", name, primary.Name, time.Since(start).Round(time.Millisecond))
	out := []asset.Probe{p}
	// Copies get the segment from the queue wal-push fills, drained in
	// the background: a copy is waited for within the same bound, and
	// one that lags past it is a warning (a slow link is not a broken
	// set-up; lifeboat check judges copies against the RPO).
	for _, c := range d.Repos[1:] {
		if c.Repo == nil {
			continue // its repository probe failed
		}
		cp := asset.Probe{Asset: d.Asset.Name, Repository: c.Name, Name: "wal_round_trip"}
		cdest := dest + "." + c.Name
		// Only a missing segment is waited for: a copy that holds
		// nothing of the asset yet gets nothing from the queue before
		// lifeboat copy (or a backup) has filled it once.
		if err := awaitWAL(ctx, c.Repo, d.Asset.Name, name, cdest, deadline, func(err error) bool { return errors.Is(err, ErrWALNotFound) }); err != nil {
			cp.Status = asset.ProbeWarn
			cp.Message = fmt.Sprintf("segment %s did not reach copy %s within %s (%s)", name, c.Name, d.Wait, oneLine(err))
			if !errors.Is(err, ErrWALNotFound) {
				cp.Message = fmt.Sprintf("segment %s is not in copy %s (%s)", name, c.Name, oneLine(err))
			}
			cp.Fix = "wal-push queues WAL for copies and a background lifeboat copy --queued sends it (lifeboat copy by hand); lifeboat status shows the copy's lag"
		} else if c.Repo.CanReadContents(ctx) != nil {
			cp.Status, cp.Message = asset.ProbeOK, fmt.Sprintf("segment %s reached copy %s in %s (sealed to its public key: not fetched back here)", name, c.Name, time.Since(start).Round(time.Millisecond))
		} else if err := checkSegment(cdest, name, si.WALSegmentSize); err != nil {
			cp.Status, cp.Message, cp.Fix = asset.ProbeFail, fmt.Sprintf("segment %s fetched back from copy %s is wrong: %v", name, c.Name, err), "run lifeboat verify"
		} else {
			cp.Status, cp.Message = asset.ProbeOK, fmt.Sprintf("segment %s reached copy %s and was fetched back in %s", name, c.Name, time.Since(start).Round(time.Millisecond))
		}
		out = append(out, cp)
	}
	return out
}

// awaitWAL fetches the WAL file name from r into dest, polling while
// retry says an error may pass, until deadline; the last error when the
// file never came.
func awaitWAL(ctx context.Context, r *repo.Repository, assetName, name, dest string, deadline time.Time, retry func(error) bool) error {
	delay := 50 * time.Millisecond
	// Where this host cannot read the contents, being there is all it can
	// check.
	sealed := r.CanReadContents(ctx) != nil
	for {
		var err error
		if sealed {
			err = walArchived(ctx, r, assetName, name)
		} else {
			err = FetchWAL(ctx, r, assetName, name, dest)
		}
		if err == nil || !retry(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// walArchived returns nil when the WAL file name is archived, without
// reading it; ErrWALNotFound when it is not.
func walArchived(ctx context.Context, r *repo.Repository, assetName, name string) error {
	segSize, ident, err := segSizeFor(ctx, r, assetName, 0)
	if err != nil {
		return err
	}
	if ident == nil {
		return fmt.Errorf("%s: %w", name, ErrWALNotFound)
	}
	n, err := ParseWALFileName(name, segSize)
	if err != nil {
		return err
	}
	ok, err := r.HasNamed(ctx, walArea, assetName, walRel(n))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: %w", name, ErrWALNotFound)
	}
	return nil
}

// checkSegment checks a fetched segment: its size, and that its first
// page header names its timeline and position.
func checkSegment(path, name string, segSize uint64) error {
	n, err := ParseWALFileName(name, segSize)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if uint64(len(data)) != segSize {
		return fmt.Errorf("%d bytes, want %d", len(data), segSize)
	}
	// XLogPageHeaderData: magic (2), info (2), timeline (4), page address (8).
	tli := binary.LittleEndian.Uint32(data[4:8])
	addr := binary.LittleEndian.Uint64(data[8:16])
	if tli != n.TLI || addr != n.SegNo*segSize {
		return fmt.Errorf("first page is of timeline %d at %X, want timeline %d at %X", tli, addr, n.TLI, n.SegNo*segSize)
	}
	return nil
}
