package copyqueue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type sent struct {
	name string
	data []byte
}

func collect(out *[]sent) Sender {
	return func(_ context.Context, name string, data []byte) error {
		*out = append(*out, sent{name, bytes.Clone(data)})
		return nil
	}
}

func TestAddDrainInOrder(t *testing.T) {
	q, err := Open(filepath.Join(t.TempDir(), "q"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := q.Add(fmt.Sprintf("wal/db/00000001/%024d", i), []byte(fmt.Sprint("segment ", i))); err != nil {
			t.Fatal(err)
		}
	}
	st, err := q.Stats()
	if err != nil || st.Entries != 5 || st.Oldest.IsZero() || st.Bytes == 0 {
		t.Fatalf("stats %+v, %v", st, err)
	}
	var got []sent
	n, err := q.Drain(t.Context(), false, collect(&got))
	if err != nil || n != 5 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	for i, s := range got {
		if s.name != fmt.Sprintf("wal/db/00000001/%024d", i) || string(s.data) != fmt.Sprint("segment ", i) {
			t.Fatalf("entry %d: %q %q", i, s.name, s.data)
		}
	}
	if st, _ := q.Stats(); st.Entries != 0 {
		t.Fatalf("drained queue still holds %d entries", st.Entries)
	}
}

func TestNameOnlyBeyondLimit(t *testing.T) {
	q, _ := Open(t.TempDir())
	q.MaxBytes = 150
	q.Add("a", bytes.Repeat([]byte{1}, 100))
	q.Add("b", bytes.Repeat([]byte{2}, 100)) // over the limit: name only
	q.Add("c", nil)
	var got []sent
	if _, err := q.Drain(t.Context(), false, collect(&got)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(got[0].data) != 100 || got[1].data != nil || got[2].data != nil {
		t.Fatalf("got %v", got)
	}
}

func TestDamagedEntries(t *testing.T) {
	q, _ := Open(t.TempDir())
	q.Add("flipped", []byte("object bytes"))
	q.Add("unreadable", []byte("x"))
	q.Add("fine", []byte("fine bytes"))
	es, _ := q.Entries()
	// A flipped byte in the content: the object is sent by name only.
	p0 := filepath.Join(q.dir, es[0].file)
	raw, _ := os.ReadFile(p0)
	raw[len(raw)-1] ^= 1
	os.WriteFile(p0, raw, 0o600)
	// A header without its name line cannot be sent at all.
	os.WriteFile(filepath.Join(q.dir, es[1].file), []byte(header), 0o600)

	var got []sent
	n, err := q.Drain(t.Context(), false, collect(&got))
	if err != nil || n != 2 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	if got[0].name != "flipped" || got[0].data != nil || got[1].name != "fine" || string(got[1].data) != "fine bytes" {
		t.Fatalf("got %v", got)
	}
	if st, _ := q.Stats(); st.Entries != 0 || st.Damaged != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFailedSendKeepsEntries(t *testing.T) {
	q, _ := Open(t.TempDir())
	q.Add("one", []byte("1"))
	q.Add("two", []byte("2"))
	calls := 0
	_, err := q.Drain(t.Context(), false, func(_ context.Context, name string, _ []byte) error {
		calls++
		if name == "two" {
			return errors.New("copy unreachable")
		}
		return nil
	})
	if err == nil || calls != 2 {
		t.Fatalf("drain: %v after %d calls", err, calls)
	}
	st, _ := q.Stats()
	if st.Entries != 1 || st.LastError == "" || st.LastErrorTime.IsZero() {
		t.Fatalf("after a failure: %+v", st)
	}
	var got []sent
	if _, err := q.Drain(t.Context(), false, collect(&got)); err != nil || len(got) != 1 || got[0].name != "two" {
		t.Fatalf("retry: %v %v", got, err)
	}
	if st, _ := q.Stats(); st.LastError != "" {
		t.Fatalf("an emptied queue still reports %q", st.LastError)
	}
}

// TestConcurrentDrainers: one drainer at a time; an entry added while the
// holder works is sent by it, whether or not a second drainer gave up.
func TestConcurrentDrainers(t *testing.T) {
	q, _ := Open(t.TempDir())
	q.Add("first", []byte("1"))
	inside, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var names []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := q.Drain(context.Background(), false, func(_ context.Context, name string, _ []byte) error {
			if name == "first" {
				close(inside)
				<-release
			}
			mu.Lock()
			names = append(names, name)
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}()
	<-inside
	if busy, err := q.Busy(); err != nil || !busy {
		t.Fatalf("busy %v, %v", busy, err)
	}
	q.Add("second", []byte("2"))
	if _, err := q.Drain(t.Context(), false, collect(new([]sent))); !errors.Is(err, ErrBusy) {
		t.Fatalf("second drainer: %v", err)
	}
	close(release)
	wg.Wait()
	if fmt.Sprint(names) != "[first second]" {
		t.Fatalf("sent %v", names)
	}
	// A waiting drainer waits instead of giving up.
	q.Add("third", []byte("3"))
	unlock, _ := q.lock(t.Context(), false)
	done := make(chan error)
	go func() {
		_, err := q.Drain(context.Background(), true, collect(new([]sent)))
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if st, _ := q.Stats(); st.Entries != 1 {
		t.Fatal("drained under somebody else's lock")
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st, _ := q.Stats(); st.Entries != 0 {
		t.Fatalf("left %d entries", st.Entries)
	}
}

func TestInvalidName(t *testing.T) {
	q, _ := Open(t.TempDir())
	for _, n := range []string{"", "a\nb"} {
		if err := q.Add(n, nil); err == nil {
			t.Fatalf("name %q accepted", n)
		}
	}
}
