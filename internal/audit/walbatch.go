package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WALBatch gathers the WAL pushes of one asset within a minute into one
// event: archiving sends a segment every few seconds under load, and an
// event (and a seal) for each would cost the archiver more than the push
// itself. Each push appends a line to a small file in the state
// directory; the first push of a later minute turns the lines into one
// event and starts the file again. A push is a process of its own, so
// the file is the batch's only memory, and a lock on it orders pushes
// that meet.
type WALBatch struct {
	path  string
	asset string
}

// OpenWALBatch is the batch of asset kept in dir.
func OpenWALBatch(dir, asset string) *WALBatch {
	return &WALBatch{path: filepath.Join(dir, "wal-"+asset+".batch"), asset: asset}
}

// Push records one push of file at now (pushErr its failure, nil when
// archived) by actor, with the repository keys it used. When the batch
// holds pushes of an earlier minute, commit receives them as one event
// first, and they are dropped only once commit succeeded.
func (b *WALBatch) Push(now time.Time, actor Actor, file string, pushErr error, commit func(*Event) error) error {
	return b.locked(func(f *os.File) error {
		if err := b.flush(f, now, commit); err != nil {
			return err
		}
		outcome, msg := OK, ""
		if pushErr != nil {
			outcome, msg = Failed, oneLine(pushErr.Error())
		}
		line := strings.Join([]string{strconv.FormatInt(now.UnixNano(), 10), strconv.Itoa(actor.UID), clean(actor.User), clean(actor.Host),
			clean(encodeKeys(actor.Keys)), outcome, clean(file), msg}, "\t") + "\n"
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			return err
		}
		_, err := f.WriteString(line)
		return err
	})
}

// Flush hands the pushes of minutes before now's to commit as one event,
// if there are any.
func (b *WALBatch) Flush(now time.Time, commit func(*Event) error) error {
	if _, err := os.Stat(b.path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return b.locked(func(f *os.File) error { return b.flush(f, now, commit) })
}

func (b *WALBatch) locked(fn func(*os.File) error) error {
	if err := os.MkdirAll(filepath.Dir(b.path), 0o700); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	f, err := os.OpenFile(b.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("audit: lock %s: %w", b.path, err)
	}
	if err := fn(f); err != nil {
		return fmt.Errorf("audit: wal batch of %s: %w", b.asset, err)
	}
	return nil
}

func (b *WALBatch) flush(f *os.File, now time.Time, commit func(*Event) error) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(bufio.NewReader(f))
	if err != nil || len(data) == 0 {
		return err
	}
	ev, ok := b.event(data)
	if !ok || !ev.Time.Truncate(time.Minute).Before(now.Truncate(time.Minute)) {
		return nil
	}
	if err := commit(ev); err != nil {
		return err
	}
	return f.Truncate(0)
}

// event is the batch's lines as one event; a torn last line (a push
// killed while writing) is left out.
func (b *WALBatch) event(data []byte) (*Event, bool) {
	ev := &Event{Type: TypeWALPush, Asset: b.asset, Outcome: OK, Details: map[string]string{}}
	n, failed := 0, 0
	for line := range bytes.Lines(data) {
		if !bytes.HasSuffix(line, []byte{'\n'}) {
			break
		}
		f := strings.Split(strings.TrimSuffix(string(line), "\n"), "\t")
		if len(f) != 8 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		t := time.Unix(0, ns).UTC()
		if n == 0 {
			uid, _ := strconv.Atoi(f[1])
			ev.Start, ev.Actor = t, Actor{UID: uid, User: f[2], Host: f[3]}
			if ev.Actor.User == "" {
				ev.Actor.User = UserName(uid)
			}
			ev.Details["first"] = f[6]
		}
		for _, kv := range strings.Split(f[4], ",") {
			if repo, key, ok := strings.Cut(kv, "="); ok {
				if ev.Actor.Keys == nil {
					ev.Actor.Keys = map[string]string{}
				}
				ev.Actor.Keys[repo] = key
			}
		}
		ev.Time = t
		ev.Details["last"] = f[6]
		n++
		if f[5] != OK {
			failed++
			ev.Outcome = Failed
			if ev.Error == "" {
				ev.Error = f[6] + ": " + f[7]
			}
		}
	}
	if n == 0 {
		return nil, false
	}
	ev.Details["pushes"] = strconv.Itoa(n)
	ev.Details["failed"] = strconv.Itoa(failed)
	return ev, true
}

func clean(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

func oneLine(s string) string { return strings.TrimSpace(clean(s)) }

func encodeKeys(keys map[string]string) string {
	parts := make([]string, 0, len(keys))
	for repo, key := range keys {
		parts = append(parts, repo+"="+key)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
