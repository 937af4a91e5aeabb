package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Objects overwritten in place. Lifeboat never overwrites, but S3 has no
// create-only permission: a put-only credential (a compromised backup
// host) can replace an object with junk, on MinIO, and on AWS without the
// bucket policy that requires If-None-Match. On a versioned bucket the
// original stays stored as an earlier version. A read whose object fails
// its check tries the object's earlier versions, newest first, and reads
// the newest that passes the same check from then on (the object is
// "pinned" to it); it says so in a warning and records the object, which
// check reports until someone repairs it and verify names with the
// version. RepairVersions makes that version current again.

// Overwritten is an object whose current version is not authentic.
type Overwritten struct {
	Name string `json:"name"`
	// Reason is why the current version failed its check.
	Reason string `json:"reason"`
	// Version is the newest earlier version that authenticates, and
	// Stored when the store received it; Version is "" when none does.
	Version string    `json:"version,omitempty"`
	Stored  time.Time `json:"stored,omitzero"`
}

// OverwrittenProblem is how verify and check word an overwritten object.
func OverwrittenProblem(o Overwritten) string {
	if o.Version == "" {
		return fmt.Sprintf("%s: the current version is not authentic and no earlier version is (%s)", o.Name, o.Reason)
	}
	return fmt.Sprintf("%s: the current version is not authentic (%s); read instead from its earlier version %s, stored %s (lifeboat verify --repair makes it current again)",
		o.Name, o.Reason, o.Version, o.Stored.UTC().Format("2006-01-02 15:04:05 UTC")) // lifeboat.TimeLayout; the format imports none of ours
}

// versionState is what a repository knows of its objects' versions,
// shared by copies of the Repository struct.
type versionState struct {
	v storage.Versioned // nil: the store keeps no versions

	// recovering serialises the searches for an authentic version, so
	// that readers failing on one object together search once.
	recovering sync.Mutex

	mu     sync.Mutex
	pins   map[string]pin  // objects read from an earlier version
	absent map[string]bool // objects with no authentic earlier version
	denied bool            // the credential may not read versions (warned once)
}

type pin struct {
	ver    storage.Version
	reason string
	seq    uint64 // when it was pinned, in the sequence of unauthentic objects met
}

func newVersionState(be storage.Backend) *versionState {
	st := &versionState{pins: map[string]pin{}, absent: map[string]bool{}}
	if v, ok := storage.Capability[storage.Versioned](be); ok {
		st.v = v
	}
	return st
}

func (st *versionState) pinned(name string) (storage.Version, bool) {
	if st == nil {
		return storage.Version{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	p, ok := st.pins[name]
	return p.ver, ok
}

func (st *versionState) unpin(name string) {
	st.mu.Lock()
	delete(st.pins, name)
	delete(st.absent, name)
	st.mu.Unlock()
}

// reads is the backend reads go through: an object pinned to an earlier
// version is read from that version.
func (r *Repository) reads() storage.Backend {
	if r.vers == nil || r.vers.v == nil {
		return r.be
	}
	return pinnedReads{Backend: r.be, st: r.vers}
}

// pinnedReads reads pinned objects from their version; everything else
// goes to the backend.
type pinnedReads struct {
	storage.Backend
	st *versionState
}

func (p pinnedReads) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if ver, ok := p.st.pinned(name); ok {
		return p.st.v.GetVersion(ctx, name, ver.ID)
	}
	return p.Backend.Get(ctx, name)
}

func (p pinnedReads) GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if ver, ok := p.st.pinned(name); ok {
		if length == 0 {
			return io.NopCloser(strings.NewReader("")), nil
		}
		return p.st.v.GetVersionRange(ctx, name, ver.ID, offset, length)
	}
	return p.Backend.GetRange(ctx, name, offset, length)
}

func (p pinnedReads) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if ver, ok := p.st.pinned(name); ok {
		return storage.ObjectInfo{Name: name, Size: ver.Size, ModTime: ver.ModTime}, nil
	}
	return p.Backend.Stat(ctx, name)
}

// recoverable reports whether a read that failed with err may have met an
// overwritten object: its content failed a check, or a range the index
// promises is not there. A missing object, a refusal, a closed backend or
// a cancelled read is not an overwrite.
func recoverable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrPermission) || errors.Is(err, storage.ErrClosed) {
		return false
	}
	return damaged(err) || storage.IsPermanent(err)
}

// recoverVersion looks, after a read of name failed with cause, for the
// newest earlier version of name of at most limit bytes that check
// accepts, and pins name to it. It reports whether name is pinned (by
// this call or an earlier one): the caller then reads it again, once.
// Without versions, or when the credential may not read them, it reports
// false and the caller fails as it would have.
func (r *Repository) recoverVersion(ctx context.Context, name string, limit int64, check func([]byte) error, cause error) bool {
	st := r.vers
	if st == nil || st.v == nil || !recoverable(cause) {
		return false
	}
	st.recovering.Lock()
	defer st.recovering.Unlock()
	st.mu.Lock()
	_, pinned := st.pins[name]
	absent := st.absent[name]
	st.mu.Unlock()
	if pinned || absent {
		return pinned
	}
	ver, err := r.findAuthenticVersion(ctx, name, limit, check)
	if err != nil {
		r.versionsUnreadable(name, err)
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if ver.ID == "" {
		st.absent[name] = true
		return false
	}
	st.pins[name] = pin{ver: ver, reason: cause.Error(), seq: r.nextMetSeq()}
	r.log.Warn("read an earlier version of an object whose current version is not authentic (overwritten by a credential without the key, or damaged); run lifeboat verify --repair",
		"object", name, "version", ver.ID, "stored", ver.ModTime.UTC().Format(time.RFC3339), "repository", r.Location(), "err", cause)
	return true
}

// findAuthenticVersion returns the newest version of name, the current one
// excepted, that check accepts: a zero Version when none does. Versions
// larger than limit are not read.
func (r *Repository) findAuthenticVersion(ctx context.Context, name string, limit int64, check func([]byte) error) (storage.Version, error) {
	vers, err := storage.Versions(ctx, r.vers.v, name)
	if err != nil {
		return storage.Version{}, err
	}
	for _, ver := range vers {
		if ver.Latest || ver.DeleteMarker || ver.Size > limit {
			continue
		}
		data, err := readVersion(ctx, r.vers.v, name, ver.ID, limit)
		if errors.Is(err, storage.ErrPermission) {
			return storage.Version{}, err
		}
		if err != nil || check(data) != nil {
			continue
		}
		return ver, nil
	}
	return storage.Version{}, nil
}

// versionsUnreadable warns, once per repository, that earlier versions
// could not be read, and why.
func (r *Repository) versionsUnreadable(name string, err error) {
	st := r.vers
	st.mu.Lock()
	first := !st.denied
	if errors.Is(err, storage.ErrPermission) {
		st.denied = true
	}
	st.mu.Unlock()
	if first {
		r.log.Warn("cannot read the earlier versions of an object that failed its check (the credential needs s3:ListBucketVersions and s3:GetObjectVersion)",
			"object", name, "repository", r.Location(), "err", err)
	}
}

func readVersion(ctx context.Context, v storage.Versioned, name, id string, limit int64) ([]byte, error) {
	rc, err := v.GetVersion(ctx, name, id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s version %s: %w", name, id, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s version %s is larger than %d bytes: %w", name, id, limit, ErrCorrupt)
	}
	return data, nil
}

// nextMetSeq counts one more object met in the sequence UnauthenticMark
// reads, so that a pin is reported to a mark's holder as an unauthentic
// object is.
func (r *Repository) nextMetSeq() uint64 {
	if r.met == nil {
		return 0
	}
	r.met.mu.Lock()
	defer r.met.mu.Unlock()
	r.met.seq++
	return r.met.seq
}

// ForgetVersions drops every pin, so that the next read of each object
// looks at its current version again: one repaired meanwhile (by another
// process) is read as it is, one still overwritten is pinned, and
// reported, anew. check calls it before it gathers its facts.
func (r *Repository) ForgetVersions() {
	if r.vers == nil {
		return
	}
	r.vers.mu.Lock()
	r.vers.pins = map[string]pin{}
	r.vers.absent = map[string]bool{}
	r.vers.mu.Unlock()
}

// OverwrittenSince lists the objects pinned to an earlier version after
// mark was taken (an UnauthenticMark; 0: every one pinned now), by name.
func (r *Repository) OverwrittenSince(mark uint64) []Overwritten {
	if r.vers == nil {
		return nil
	}
	r.vers.mu.Lock()
	defer r.vers.mu.Unlock()
	var out []Overwritten
	for name, p := range r.vers.pins {
		if p.seq > mark {
			out = append(out, Overwritten{Name: name, Reason: p.reason, Version: p.ver.ID, Stored: p.ver.ModTime})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// packCheck is the check of a pack's version read whole: its hash and its
// sealed header.
func (r *Repository) packCheck(id ID) func([]byte) error {
	return func(data []byte) error { return r.checkPackBytes(id, data) }
}

// recoverPack is recoverVersion for a pack a read of which failed.
func (r *Repository) recoverPack(ctx context.Context, id ID, cause error) bool {
	return r.recoverVersion(ctx, packName(id), r.maxPackSize(), r.packCheck(id), cause)
}

// authenticStored checks the stored bytes of any object of the repository
// as its readers do.
func (r *Repository) authenticStored(name string, data []byte) error {
	if strings.HasPrefix(name, "keys/") {
		_, err := parseKeyObject(name, data)
		return err
	}
	_, err := r.openStored(name, data)
	return err
}

// ErrNoVersions is matched by a repair of a repository whose store keeps
// no versions (a directory).
var ErrNoVersions = errors.New("the store keeps no versions")

// NoVersions is VersionsReport.Unchecked for a store without versions.
const NoVersions = "the store keeps no versions"

// VersionsReport is what a look at every object's versions found.
type VersionsReport struct {
	// Checked is false when the store keeps no versions, or the
	// credential may not list them (Unchecked says why).
	Checked   bool
	Unchecked string
	// Overwritten are the objects whose current version is not
	// authentic.
	Overwritten []Overwritten
}

// CanaryArea holds the objects lifeboat check writes to probe a credential's rights
// (canary/<host>, FORMAT.md §1): no part of the repository, never read, so never reported here
// (a credential with too many rights can leave a canary several versions).
const CanaryArea = "canary"

// CheckVersions finds every object whose current version is not
// authentic, with the newest earlier version that is. Lifeboat writes
// every name once, so only a name with more than one version can have
// been overwritten: those alone are read.
func (r *Repository) CheckVersions(ctx context.Context) (*VersionsReport, error) {
	rep := &VersionsReport{}
	if r.vers == nil || r.vers.v == nil {
		rep.Unchecked = NoVersions
		return rep, nil
	}
	type object struct {
		name   string
		latest storage.Version
		count  int
	}
	var multi []object
	var cur object
	flush := func() {
		if cur.count > 1 && cur.latest.ID != "" && !cur.latest.DeleteMarker && !strings.HasPrefix(cur.name, CanaryArea+"/") {
			multi = append(multi, cur)
		}
	}
	err := r.vers.v.ListVersions(ctx, "", func(v storage.Version) error {
		if v.Name != cur.name {
			flush()
			cur = object{name: v.Name}
		}
		if v.Latest {
			cur.latest = v
		}
		cur.count++
		return nil
	})
	if errors.Is(err, storage.ErrPermission) {
		rep.Unchecked = "the credential may not list versions (s3:ListBucketVersions)"
		return rep, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	flush()
	rep.Checked = true
	for _, o := range multi {
		limit := r.objectCap(o.name)
		check := func(data []byte) error { return r.authenticStored(o.name, data) }
		data, err := readVersion(ctx, r.vers.v, o.name, o.latest.ID, limit)
		if err == nil {
			err = check(data)
		}
		if err == nil {
			continue
		}
		if !damaged(err) && !storage.IsPermanent(err) || errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrPermission) {
			return nil, fmt.Errorf("read %s: %w", o.name, err)
		}
		ow := Overwritten{Name: o.name, Reason: err.Error()}
		ver, err := r.findAuthenticVersion(ctx, o.name, limit, check)
		if err != nil {
			return nil, fmt.Errorf("versions of %s: %w", o.name, err)
		}
		ow.Version, ow.Stored = ver.ID, ver.ModTime
		rep.Overwritten = append(rep.Overwritten, ow)
	}
	return rep, nil
}

// Repaired is one object RepairVersions made current again.
type Repaired struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Stored  time.Time `json:"stored"`
}

// RepairVersions makes the newest authentic version of every overwritten
// object its current version again (a copy of it over the name: nothing is
// deleted, the junk stays stored as an earlier version), and checks that
// it reads back authentic. Objects without an authentic version stay as
// they are and are returned in the report. It needs a credential that may
// read versions and put over an existing name.
func (r *Repository) RepairVersions(ctx context.Context) ([]Repaired, *VersionsReport, error) {
	rep, err := r.CheckVersions(ctx)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case rep.Unchecked == NoVersions:
		return nil, rep, fmt.Errorf("%s: %w", r.Location(), ErrNoVersions)
	case !rep.Checked:
		return nil, rep, fmt.Errorf("cannot repair %s: %s: %w", r.Location(), rep.Unchecked, storage.ErrPermission)
	}
	var done []Repaired
	var left []Overwritten
	for _, o := range rep.Overwritten {
		if o.Version == "" {
			left = append(left, o)
			continue
		}
		if err := r.vers.v.RestoreVersion(ctx, o.Name, o.Version); err != nil {
			return done, rep, fmt.Errorf("make version %s of %s current: %w", o.Version, o.Name, err)
		}
		data, err := readCapped(ctx, r.be, o.Name, r.objectCap(o.Name))
		if err == nil {
			err = r.authenticStored(o.Name, data)
		}
		if err != nil {
			return done, rep, fmt.Errorf("%s after making version %s current: %w", o.Name, o.Version, err)
		}
		r.vers.unpin(o.Name)
		done = append(done, Repaired{Name: o.Name, Version: o.Version, Stored: o.Stored})
		r.log.Info("made the authentic version of an overwritten object current again", "object", o.Name, "version", o.Version,
			"repository", r.Location())
	}
	rep.Overwritten = left
	return done, rep, nil
}

// verifyVersions adds to rep every object whose current version is not
// authentic.
func (r *Repository) verifyVersions(ctx context.Context, rep *VerifyReport) error {
	vr, err := r.CheckVersions(ctx)
	if err != nil {
		return err
	}
	rep.VersionsUnchecked = vr.Unchecked
	rep.Overwritten = vr.Overwritten
	met := map[string]bool{}
	for _, u := range rep.Unauthentic {
		met[u.Name] = true
	}
	for _, o := range vr.Overwritten {
		if o.Version == "" && met[o.Name] {
			continue // a problem already, as an unauthentic object met
		}
		rep.addf("%s", OverwrittenProblem(o))
	}
	return nil
}
