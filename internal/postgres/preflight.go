package postgres

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// checkArchiving refuses, before a backup starts, a server whose WAL would
// never reach the asset: archiving off, archive_command empty or pointing
// at another asset or policy, or an archiver that is failing. Each refusal
// names the line to put in postgresql.conf. Without it a backup would wait
// for its last segment until ArchiveTimeout, then fail.
func checkArchiving(ctx context.Context, conn *pgx.Conn, opts BackupOptions, si ServerInfo) error {
	fix := "archive_command = '" + archiveCommand(opts) + "'"
	fail := func(format string, args ...any) error {
		return fmt.Errorf("asset %s: %s: %w", opts.Asset, fmt.Sprintf(format, args...), ErrArchiving)
	}
	switch {
	case si.ArchiveMode == "off":
		return fail("archive_mode is off (a backup without its WAL cannot be restored): put archive_mode = on and %s in postgresql.conf and restart the server", fix)
	case si.ArchiveLibrary != "":
		return fail("archive_library %q is set, so archive_command is not used: set archive_library = '' and %s, then reload the server", si.ArchiveLibrary, fix)
	case strings.TrimSpace(si.ArchiveCommand) == "" || si.ArchiveCommand == "(disabled)":
		return fail("archive_command is empty, so no WAL is archived: put %s in postgresql.conf and reload the server", fix)
	}
	if why := commandMismatch(si.ArchiveCommand, opts); why != "" {
		return fail("archive_command %q %s: put %s in postgresql.conf and reload the server", si.ArchiveCommand, why, fix)
	}
	var lastArchived, lastFailed *time.Time
	var failedWAL *string
	var current string
	var segSize int64
	if err := conn.QueryRow(ctx, sqlArchiver).Scan(&current, &segSize, &lastArchived, &lastFailed, &failedWAL); err != nil {
		return fmt.Errorf("asset %s: read pg_stat_archiver: %w", opts.Asset, err)
	}
	if lastFailed != nil && (lastArchived == nil || lastFailed.After(*lastArchived)) {
		wal, since := "", "nothing was ever archived"
		if failedWAL != nil {
			wal = " " + *failedWAL
		}
		if lastArchived != nil {
			since = "last success " + lifeboat.FormatTime(*lastArchived)
		}
		return fail("the archiver is failing: archiving%s failed at %s (%s); the server log says why, and running the archive_command by hand as the server's user shows it (it should be %s)",
			wal, lifeboat.FormatTime(*lastFailed), since, fix)
	}
	return nil
}

// archiveCommand is the archive_command that archives into this asset
// with this policy.
func archiveCommand(opts BackupOptions) string {
	bin := "lifeboat"
	if exe, err := os.Executable(); err == nil {
		if onPath, err := exec.LookPath("lifeboat"); err != nil || !sameFile(onPath, exe) {
			bin = exe
		}
	}
	policy := "<policy file>"
	if opts.PolicyPath != "" {
		if abs, err := filepath.Abs(opts.PolicyPath); err == nil {
			policy = abs
		}
	}
	return fmt.Sprintf("%s -c %s wal-push %s %%p", bin, policy, opts.Asset)
}

// commandMismatch says why archive_command does not archive into this
// asset with this policy ("" when it does, as far as its words tell): it
// must run wal-push for the asset, and a policy it names must be this one.
func commandMismatch(command string, opts BackupOptions) string {
	words := strings.Fields(strings.NewReplacer(`"`, " ", `'`, " ").Replace(command))
	push := -1
	for i, w := range words {
		if w == "wal-push" {
			push = i
			break
		}
	}
	if push < 0 {
		if len(words) > 0 {
			if line, ok := scriptWALPush(words[0]); ok {
				if why := commandMismatch(line, opts); why != "" {
					return fmt.Sprintf("runs the script %s, whose wal-push line %s", words[0], why)
				}
				return ""
			}
		}
		return "does not run lifeboat wal-push"
	}
	var target string
	for i := push + 1; i < len(words); i++ {
		w := words[i]
		if strings.HasPrefix(w, "-") {
			if !strings.Contains(w, "=") && i+1 < len(words) && !strings.HasPrefix(words[i+1], "%") && w != "-v" && w != "-vv" {
				i++ // the flag's value
			}
			continue
		}
		target = w
		break
	}
	if target != opts.Asset {
		return fmt.Sprintf("archives into asset %q, not %s", target, opts.Asset)
	}
	for i, w := range words[:push] {
		var named string
		switch {
		case (w == "-c" || w == "--config") && i+1 < push:
			named = words[i+1]
		case strings.HasPrefix(w, "--config="):
			named = strings.TrimPrefix(w, "--config=")
		case strings.HasPrefix(w, "-c") && len(w) > 2:
			named = w[2:]
		default:
			continue
		}
		if opts.PolicyPath != "" && !sameFile(named, opts.PolicyPath) {
			return fmt.Sprintf("uses the policy %s, but this run uses %s", named, opts.PolicyPath)
		}
	}
	return ""
}

// scriptWALPush finds the line of a shell script that runs wal-push, for
// an archive_command that wraps Lifeboat in a script of its own (to time
// or log it); ok is false when path is not a readable script or no line
// of it runs wal-push.
func scriptWALPush(path string) (line string, ok bool) {
	if !filepath.IsAbs(path) {
		return "", false
	}
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, buf)
	text := string(buf[:n])
	if !strings.HasPrefix(text, "#!") {
		return "", false
	}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "#") {
			continue
		}
		if slices.Contains(strings.Fields(l), "wal-push") {
			return l, true
		}
	}
	return "", false
}

// sameFile reports whether two paths name one file.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
