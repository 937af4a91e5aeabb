package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// Result is what a child run reports to the daemon as it ends: the
// document it writes to the result channel the daemon gave it (see
// EnvResultFD). The daemon records it in the catalog as it is; it never
// reads a child's output to learn how the run went.
type Result struct {
	// Version is ResultVersion.
	Version int `json:"version"`
	// Result is ok, failed, or aborted (the run was asked to stop).
	Result catalog.Result `json:"result"`
	// Error says why the run is not ok, on one line.
	Error string `json:"error,omitempty"`
	// Snapshot is the full ID of the snapshot the run stored, "" for none;
	// a backup that failed only at its copies names the snapshot its
	// primary holds. Bytes is what the snapshot restores, BytesStored what
	// it added to the repository.
	Snapshot    string `json:"snapshot,omitempty"`
	Bytes       int64  `json:"bytes,omitempty"`
	BytesStored int64  `json:"bytes_stored,omitempty"`
	// Drill is the report of a drill that ran, passed or not (its ID is
	// Drill.ID); nil for a backup, or a drill that could not start.
	Drill *evidence.DrillReport `json:"drill,omitempty"`
}

// ResultVersion is the version of the Result document this build writes.
const ResultVersion = 1

// EnvResultFD is the environment variable that gives a child the file
// descriptor of its result channel: the write end of a pipe the daemon
// reads. It is set only for the children the daemon starts.
const EnvResultFD = "LIFEBOAT_RESULT_FD"

// maxResult bounds the result document the daemon reads.
const maxResult = 1 << 20

// Reporter is a child's end of its result channel: the child notes what
// it stored as it goes (Snapshot, Drill) and calls Finish as it ends. A
// nil Reporter, which a process the daemon did not start has, does
// nothing.
type Reporter struct {
	f   *os.File
	res Result
}

// OpenReporter takes the result channel the daemon gave this process, or
// returns nil when there is none. It removes EnvResultFD from the
// environment and closes the channel on exec, so the programs this one
// starts (pg_dump, or wal-fetch under a drill's PostgreSQL) neither write
// to it nor hold it open. Call it first thing in main, before starting
// anything.
func OpenReporter() *Reporter {
	v, ok := os.LookupEnv(EnvResultFD)
	if !ok {
		return nil
	}
	os.Unsetenv(EnvResultFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd <= 2 {
		return nil
	}
	// Only a pipe: a variable left in a shell's environment must not make
	// this process write into whatever file has that number.
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil
	}
	syscall.CloseOnExec(fd)
	return &Reporter{f: os.NewFile(uintptr(fd), "result")}
}

// Snapshot notes the snapshot the run stored.
func (r *Reporter) Snapshot(id string, bytes, stored int64) {
	if r == nil {
		return
	}
	r.res.Snapshot, r.res.Bytes, r.res.BytesStored = id, bytes, stored
}

// Drill notes the report of the drill the run carried out (nil: none).
func (r *Reporter) Drill(rep *evidence.DrillReport) {
	if r == nil || rep == nil {
		return
	}
	r.res.Drill = rep
	if r.res.Snapshot == "" {
		r.res.Snapshot, r.res.Bytes = rep.Snapshot, rep.Bytes
	}
}

// Finish writes the result document and closes the channel: ok when err
// is nil, aborted when ctx was cancelled (the daemon asked the run to
// stop), failed otherwise. line puts err on one line for the record (nil:
// its text with newlines replaced).
func (r *Reporter) Finish(ctx context.Context, err error, line func(error) string) error {
	if r == nil {
		return nil
	}
	defer r.f.Close()
	res := r.res
	res.Version, res.Result = ResultVersion, catalog.OK
	if err != nil {
		res.Result = catalog.Failed
		if ctx.Err() != nil {
			res.Result = catalog.Aborted
		}
		if line != nil {
			res.Error = line(err)
		} else {
			res.Error = oneLine(err.Error())
		}
	}
	doc, merr := json.Marshal(res)
	if merr != nil {
		return fmt.Errorf("result: %w", merr)
	}
	if _, werr := r.f.Write(append(doc, '\n')); werr != nil {
		return fmt.Errorf("result: %w", werr)
	}
	return nil
}

// decodeResult reads a result document; nil, nil when the child wrote
// nothing.
func decodeResult(doc []byte) (*Result, error) {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil, nil
	}
	var r Result
	if err := json.Unmarshal(doc, &r); err != nil {
		return nil, fmt.Errorf("its result does not decode: %w", err)
	}
	switch r.Result {
	case catalog.OK, catalog.Failed, catalog.Aborted:
		return &r, nil
	}
	return nil, fmt.Errorf("its result says %q", r.Result)
}
