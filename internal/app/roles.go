package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/s3"
)

// The canary of a repository whose policy names its credential's role is repo.CanaryArea/<host>,
// outside every area of the repository format (FORMAT.md §1): no reader lists it and expire never
// deletes it. One name per host, not one per check: a credential that may not delete (the backup
// role) cannot remove its canary, and under object lock nobody can before its date, so a new name
// every minute would leave thousands.

// roleFacts probes the credential of every repository whose policy names its role.
func (s *Service) roleFacts(ctx context.Context) map[string]*health.RoleFacts {
	out := map[string]*health.RoleFacts{}
	for i := range s.Policy.Repositories {
		rp := &s.Policy.Repositories[i]
		if rp.Role != "" {
			out[rp.Name] = s.probeRole(ctx, rp)
		}
	}
	return out
}

// probeRole writes the canary, then asks the store to change it as only a role with more rights
// may (storage/s3 ProbeRights), and holds what the store allowed against the role.
func (s *Service) probeRole(ctx context.Context, rp *policy.Repository) *health.RoleFacts {
	f := &health.RoleFacts{Role: rp.Role}
	var be storage.Backend
	if r := s.openedRepository(rp); r != nil {
		be = r.Backend()
	} else {
		// The probes need no key: the credential of a repository that
		// could not be opened (its key missing, or its credential
		// refused what opening reads) is probed all the same.
		b, err := OpenBackend(ctx, rp)
		if err != nil {
			f.Error = err.Error()
			return f
		}
		defer b.Close()
		be = b
	}
	prober, ok := storage.Capability[s3.RightsProber](be)
	if !ok {
		f.Error = "the store offers no probe of its credential's rights (role applies to s3 repositories)"
		return f
	}
	name := repo.CanaryArea + "/" + canaryHost()
	body := fmt.Appendf(nil, "lifeboat check canary of %s: the credential's rights are probed on this object; it holds nothing else\n", canaryHost())
	write := s3.Allowed
	switch err := be.Put(ctx, name, bytes.NewReader(body), int64(len(body))); {
	case err == nil, errors.Is(err, storage.ErrExists):
		// An existing canary went through the store's check of the
		// right to put before its precondition failed.
	case errors.Is(err, storage.ErrPermission):
		write = s3.Refused
	default:
		f.Error = fmt.Sprintf("write the canary %s: %v", name, err)
		return f
	}
	rights, err := prober.ProbeRights(ctx, name)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	judgeRole(f, rp, write, rights)
	s.Log.Info("role probe", "repository", rp.Name, "role", rp.Role, "canary", name, "write", write.String(),
		"delete", rights.Delete.String(), "delete_version", rights.DeleteVersion.String(), "retention", rights.Retention.String(),
		"notes", rights.Notes)
	return f
}

// judgeRole holds what the probes found against what the role may do: a right the role lacks is
// "more", one it needs and was refused is "less"; a probe not tried says nothing either way.
func judgeRole(f *health.RoleFacts, rp *policy.Repository, write s3.Probe, got s3.Rights) {
	type right struct {
		probe       s3.Probe
		did         string // what the credential can do
		lacks       string // what it cannot
		want        s3.Probe
		indifferent bool // the role may or may not have it
	}
	writer := rp.Role == policy.RoleBackup || rp.Role == policy.RoleExpire
	deleter := rp.Role == policy.RoleExpire
	want := func(yes bool) s3.Probe {
		if yes {
			return s3.Allowed
		}
		return s3.Refused
	}
	rights := []right{
		{probe: write, did: "can create objects", lacks: "cannot create objects", want: want(writer)},
		{probe: got.Delete, did: "can delete", lacks: "cannot delete", want: want(deleter)},
		{probe: got.DeleteVersion, did: "can delete object versions", lacks: "cannot delete object versions", want: want(deleter)},
		// The backup role of the object_lock set-up must set locks: its
		// uploads carry them (docs/storage.md).
		{probe: got.Retention, did: "can change retention", lacks: "cannot change retention", want: want(deleter),
			indifferent: rp.Role == policy.RoleBackup && rp.ObjectLock != ""},
	}
	for _, r := range rights {
		name := r.did
		switch {
		case r.probe == s3.NotTried:
			continue
		case r.indifferent:
		case r.probe == s3.Allowed && r.want == s3.Refused:
			f.More = append(f.More, r.did)
		case r.probe == s3.Refused && r.want == s3.Allowed:
			f.Less = append(f.Less, r.lacks)
		}
		if r.probe == s3.Refused {
			name = r.lacks
		}
		f.Probed = append(f.Probed, name)
	}
}

// canaryHost is this host's name as a name segment of the repository format.
func canaryHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "host"
	}
	h = canaryUnsafe.ReplaceAllString(h, "-")
	if h[0] == '.' || h[0] == '-' {
		h = "host" + h
	}
	return h
}

var canaryUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
