// Package copyqueue is the durable local queue of objects that a copy
// repository still has to receive. wal-push adds each WAL file it stored in
// the primary, and returns; a drainer (a background `lifeboat copy
// --queued`, `lifeboat copy`, or the daemon) sends the entries to the copy
// later. So a slow or unreachable copy never slows archive_command, and
// what was archived reaches the copy even across a restart of the host.
//
// One queue is one directory. Every entry is one file, written to a
// temporary name, synced and renamed into place, so an entry is either
// whole or absent. An entry holds the object's name and, while the queue
// is below its byte limit, the object's stored bytes (already encrypted),
// so that the copy can still be filled when the primary is out of reach.
// Above the limit an entry holds the name only and the drainer reads the
// object from the primary. Entries are removed only after the copy holds
// the object, so a drainer killed at any point loses nothing: the next one
// sends the entry again, which is harmless since objects are immutable.
package copyqueue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/durable"
)

// DefaultMaxBytes is how many bytes of object content a queue keeps before
// new entries hold names only: enough for hours of a busy cluster's WAL
// while a copy is unreachable, and small beside the disk of a database
// host, whose pg_wal must never be starved by this queue.
const DefaultMaxBytes = 1 << 30

// ErrBusy means another drainer holds the queue.
var ErrBusy = errors.New("another drainer is working on this queue")

const (
	header        = "lifeboat-copyqueue 1"
	lockName      = "drain.lock"
	errorName     = "last-error"
	entrySuffix   = ".entry"
	damagedSuffix = ".damaged"
)

// errDamaged marks an entry whose object name cannot be read.
var errDamaged = errors.New("damaged entry")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Queue is one copy repository's queue.
type Queue struct {
	dir string
	// MaxBytes bounds the object content the queue keeps; entries added
	// beyond it hold names only.
	MaxBytes int64
	// Now is the clock used for entry names; tests move it.
	Now func() time.Time
}

// Open opens the queue in dir, creating the directory when needed.
func Open(dir string) (*Queue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("copy queue: %w", err)
	}
	return &Queue{dir: dir, MaxBytes: DefaultMaxBytes, Now: time.Now}, nil
}

// Dir is the queue's directory.
func (q *Queue) Dir() string { return q.dir }

// Entry is one queued object.
type Entry struct {
	file  string
	Name  string    // the object's name in the repositories
	Added time.Time // when the entry was queued
	Size  int64     // bytes of the entry file
}

// Add queues the object name with its stored bytes (nil: name only). It
// returns once the entry is durable.
func (q *Queue) Add(name string, data []byte) error {
	if name == "" || strings.ContainsAny(name, "\n\x00") {
		return fmt.Errorf("copy queue: invalid object name %q", name)
	}
	if data != nil && q.MaxBytes >= 0 {
		st, err := q.Stats()
		if err != nil {
			return err
		}
		if st.Bytes+int64(len(data)) > q.MaxBytes {
			data = nil
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %08x %d\n%s\n", header, crc32.Checksum(data, castagnoli), len(data), name)
	b.Write(data)

	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("copy queue: %w", err)
	}
	// Entry names sort by the time they were added: a drainer sends the
	// oldest first.
	id := fmt.Sprintf("%020d-%s%s", q.Now().UnixNano(), hex.EncodeToString(rnd[:]), entrySuffix)
	if err := durable.WriteNew(filepath.Join(q.dir, id), b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("copy queue: %w", err)
	}
	return nil
}

// Entries lists the queued entries, oldest first.
func (q *Queue) Entries() ([]Entry, error) {
	des, err := os.ReadDir(q.dir)
	if err != nil {
		return nil, fmt.Errorf("copy queue: %w", err)
	}
	var out []Entry
	for _, de := range des {
		n := de.Name()
		if !strings.HasSuffix(n, entrySuffix) || strings.HasPrefix(n, ".") {
			continue
		}
		info, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // drained meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("copy queue: %w", err)
		}
		e := Entry{file: n, Size: info.Size()}
		if ns, _, ok := strings.Cut(n, "-"); ok {
			if v, err := strconv.ParseInt(ns, 10, 64); err == nil {
				e.Added = time.Unix(0, v)
			}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.file, b.file) })
	return out, nil
}

// Stats sums up a queue.
type Stats struct {
	Entries int
	Bytes   int64
	// Damaged counts entries set aside because their object name could
	// not be read: their objects reach the copy only by a full copy.
	Damaged int
	Oldest  time.Time // zero when empty
	// LastError is the failure that stopped the last drain, "" after a
	// drain that emptied the queue.
	LastError     string
	LastErrorTime time.Time
}

// Stats reports the queue's length, size, oldest entry and last failure.
func (q *Queue) Stats() (Stats, error) {
	es, err := q.Entries()
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Entries: len(es)}
	if st.Damaged, err = q.countDamaged(); err != nil {
		return st, err
	}
	for i, e := range es {
		st.Bytes += e.Size
		if i == 0 {
			st.Oldest = e.Added
		}
	}
	data, err := os.ReadFile(filepath.Join(q.dir, errorName))
	if err == nil {
		ts, msg, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
		st.LastError = msg
		st.LastErrorTime, _ = time.Parse(time.RFC3339, ts)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("copy queue: %w", err)
	}
	return st, nil
}

func (q *Queue) countDamaged() (int, error) {
	m, err := filepath.Glob(filepath.Join(q.dir, "*"+damagedSuffix))
	if err != nil {
		return 0, fmt.Errorf("copy queue: %w", err)
	}
	return len(m), nil
}

// read loads an entry. A damaged entry (bad header or checksum) comes back
// with its name when the name is readable and nil data, so that the
// object is fetched from the primary instead of copied damaged.
func (q *Queue) read(e *Entry) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(q.dir, e.file))
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	first, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("entry %s: truncated header: %w", e.file, errDamaged)
	}
	name, err := br.ReadString('\n')
	if err != nil || len(name) < 2 {
		return nil, fmt.Errorf("entry %s: no object name: %w", e.file, errDamaged)
	}
	e.Name = strings.TrimSuffix(name, "\n")
	var sum uint32
	var size int
	if _, err := fmt.Sscanf(strings.TrimPrefix(first, header), " %08x %d\n", &sum, &size); err != nil || !strings.HasPrefix(first, header) {
		return nil, nil
	}
	data := raw[len(first)+len(name):]
	if size == 0 || len(data) != size || crc32.Checksum(data, castagnoli) != sum {
		return nil, nil
	}
	return data, nil
}

// Sender delivers one object to the copy. data is the object's stored
// bytes, or nil when the entry holds the name only: the sender then reads
// the object from the primary. It must succeed when the copy already holds
// the object.
type Sender func(ctx context.Context, name string, data []byte) error

// Drain sends every entry, oldest first, and removes each once sent. It
// stops at the first failure, which it records for Stats and returns. With
// wait false it returns ErrBusy at once when another drainer holds the
// queue; with wait true it waits for that drainer to finish. It returns how
// many entries it sent.
func (q *Queue) Drain(ctx context.Context, wait bool, send Sender) (int, error) {
	sent := 0
	for {
		n, err := q.drainLocked(ctx, wait, send)
		sent += n
		if errors.Is(err, ErrBusy) && !wait && sent > 0 {
			return sent, nil // the other drainer takes the rest
		}
		if err != nil {
			return sent, err
		}
		// An entry added after the last listing but before the lock was
		// released found the lock held and left it to us: look once more.
		es, err := q.Entries()
		if err != nil {
			return sent, err
		}
		if len(es) == 0 {
			return sent, nil
		}
	}
}

func (q *Queue) drainLocked(ctx context.Context, wait bool, send Sender) (int, error) {
	unlock, err := q.lock(ctx, wait)
	if err != nil {
		return 0, err
	}
	defer unlock()
	sent := 0
	for {
		es, err := q.Entries()
		if err != nil {
			return sent, err
		}
		if len(es) == 0 {
			os.Remove(filepath.Join(q.dir, errorName))
			return sent, nil
		}
		for i := range es {
			e := &es[i]
			if err := ctx.Err(); err != nil {
				return sent, err
			}
			data, err := q.read(e)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if errors.Is(err, errDamaged) {
				// Unreadable, so unsendable: set it aside rather than block
				// every later entry. Stats counts it; a full copy fills
				// the gap.
				if err := os.Rename(filepath.Join(q.dir, e.file), filepath.Join(q.dir, e.file+damagedSuffix)); err != nil {
					return sent, fmt.Errorf("copy queue: %w", err)
				}
				continue
			}
			if err == nil {
				err = send(ctx, e.Name, data)
			}
			if err != nil {
				err = fmt.Errorf("copy queue %s: %w", q.dir, err)
				q.RecordError(err)
				return sent, err
			}
			if err := os.Remove(filepath.Join(q.dir, e.file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return sent, fmt.Errorf("copy queue: %w", err)
			}
			sent++
		}
	}
}

// RecordError records a failure to drain for Stats, until a drain empties
// the queue.
func (q *Queue) RecordError(err error) {
	line := q.Now().UTC().Format(time.RFC3339) + " " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
	tmp := filepath.Join(q.dir, "."+errorName+".tmp")
	if os.WriteFile(tmp, []byte(line), 0o600) == nil {
		os.Rename(tmp, filepath.Join(q.dir, errorName))
	}
}

// Busy reports whether a drainer holds the queue now.
func (q *Queue) Busy() (bool, error) {
	unlock, err := q.lock(context.Background(), false)
	if errors.Is(err, ErrBusy) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	unlock()
	return false, nil
}

// lock takes the queue's drain lock, an flock the kernel drops when the
// holder dies, so a killed drainer never blocks the next one.
func (q *Queue) lock(ctx context.Context, wait bool) (func(), error) {
	f, err := os.OpenFile(filepath.Join(q.dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("copy queue: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("copy queue: lock %s: %w", q.dir, err)
		}
		if !wait {
			f.Close()
			return nil, ErrBusy
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
