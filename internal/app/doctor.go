package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// DoctorOptions shape a doctor run.
type DoctorOptions struct {
	// Wait bounds each WAL round trip's wait for its segment.
	Wait time.Duration
}

// Doctor probes what the assets' protection depends on: the policy and
// key files' permissions, state_dir, every repository the assets use
// (reachable, and writable with this credential), and what each kind
// that is an asset.Doctor probes of its source. One probe a line; what
// they write (a lock released at once, a file in state_dir, a WAL switch)
// changes nothing a backup or restore reads.
func (s *Service) Doctor(ctx context.Context, assets []*policy.Asset, o DoctorOptions) ([]asset.Probe, error) {
	p := s.Policy
	var out []asset.Probe
	if p.Source != "" {
		out = append(out, secretFileProbe("policy", p.Source))
	}
	out = append(out, userProbe(p), stateDirProbe(p.StateDir))

	// Each repository once, in the order the assets name them.
	type opened struct{ dr asset.DoctorRepo }
	repos := map[string]*opened{}
	for _, a := range assets {
		rps, err := p.AssetRepositories(a)
		if err != nil {
			return nil, &asset.UsageError{Err: err}
		}
		for _, rp := range rps {
			if repos[rp.Name] != nil {
				continue
			}
			o := &opened{dr: asset.DoctorRepo{Name: rp.Name}}
			repos[rp.Name] = o
			if rp.KeyFile != "" {
				out = append(out, secretFileProbe("key_file", rp.KeyFile))
			}
			out = append(out, s.repositoryProbe(ctx, rp, &o.dr))
			if pr, ok := versioningProbe(ctx, o.dr.Repo, rp.Name); ok {
				out = append(out, pr)
			}
		}
	}
	work, err := os.MkdirTemp("", "lifeboat-doctor-")
	if err != nil {
		return nil, fmt.Errorf("doctor: %w", err)
	}
	defer os.RemoveAll(work)
	for _, a := range assets {
		_, k, err := s.Asset(a.Name)
		if err != nil {
			return nil, err
		}
		d, ok := k.(asset.Doctor)
		if !ok {
			continue
		}
		rps, _ := p.AssetRepositories(a)
		run := &asset.DoctorRun{Asset: a, PolicyPath: p.Source, Wait: o.Wait, WorkDir: work, Log: s.Log}
		for i, rp := range rps {
			if rp.KeyFile != "" {
				run.Secrets = append(run.Secrets, rp.KeyFile)
			}
			dr := repos[rp.Name].dr
			dr.Primary = i == 0
			run.Repos = append(run.Repos, dr)
		}
		out = append(out, d.Probes(ctx, run)...)
	}
	return out, nil
}

// repositoryProbe opens the repository and takes and releases a shared
// lock on the scope "doctor": the smallest write every credential that
// backs up must be able to make (a put-only credential too), and one
// that goes where backups write.
func (s *Service) repositoryProbe(ctx context.Context, rp *policy.Repository, dr *asset.DoctorRepo) asset.Probe {
	pr := asset.Probe{Repository: rp.Name, Name: "repository"}
	r, err := s.Repository(ctx, rp)
	if err != nil {
		pr.Status, pr.Message = asset.ProbeFail, "cannot open: "+oneLine(err)
		pr.Fix = "check the url and credentials of repository " + rp.Name + " (lifeboat repo init creates one)"
		return pr
	}
	dr.Repo = r
	l, err := r.Lock(ctx, "doctor", "lifeboat doctor", false, 0)
	if errors.Is(err, repo.ErrLocked) {
		// Another process holds the whole repository (expire): that
		// says nothing of this credential.
		pr.Status, pr.Message = asset.ProbeWarn, "reachable, but the write probe met a lock: "+oneLine(err)
		pr.Fix = "run lifeboat doctor again once it is released"
		return pr
	}
	if err != nil {
		pr.Status, pr.Message = asset.ProbeFail, "reachable, but writing a lock failed: "+oneLine(err)
		pr.Fix = "give this user (or credential) write access to " + r.Location()
		return pr
	}
	l.Unlock()
	pr.Status, pr.Message = asset.ProbeOK, "reachable and writable at "+r.Location()
	return pr
}

// secretFileProbe warns of a policy or key file others may read: it
// holds the repository key or what unlocks it.
func secretFileProbe(name, path string) asset.Probe {
	pr := asset.Probe{Name: name}
	fi, err := os.Stat(path)
	if err != nil {
		pr.Status, pr.Message = asset.ProbeFail, oneLine(err)
		return pr
	}
	mode := fi.Mode().Perm()
	if mode&0o007 != 0 || mode&0o020 != 0 {
		pr.Status = asset.ProbeWarn
		pr.Message = fmt.Sprintf("%s has mode %04o: others can read or change it", path, mode)
		pr.Fix = "chmod 0640 " + path + " (0600 when the server's user owns it)"
		return pr
	}
	pr.Status, pr.Message = asset.ProbeOK, fmt.Sprintf("%s has mode %04o", path, mode)
	return pr
}

// stateDirProbe checks that state_dir can be written, by writing a file
// there: the catalog, the copy queues and the mirrors live in it.
// userProbe says whether this user may run the commands that write (see
// RunAs): doctor run as root on a host where Lifeboat runs as postgres
// tells the operator before backup refuses.
func userProbe(p *policy.Policy) asset.Probe {
	pr := asset.Probe{Name: "user"}
	if _, err := RunAs(p, false); err != nil {
		pr.Status, pr.Message = asset.ProbeFail, oneLine(err)
		pr.Fix = "run lifeboat as the user the message names; backup, wal-push, copy, expire and serve refuse anyone else"
		return pr
	}
	pr.Status, pr.Message = asset.ProbeOK, "this user may write the repositories and state_dir"
	return pr
}

func stateDirProbe(dir string) asset.Probe {
	pr := asset.Probe{Name: "state_dir"}
	fail := func(err error) asset.Probe {
		pr.Status, pr.Message = asset.ProbeFail, fmt.Sprintf("%s is not writable: %s", dir, oneLine(err))
		pr.Fix = "create " + dir + " owned by the user lifeboat runs as, or set state_dir in the policy"
		return pr
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return fail(err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fail(err)
	}
	pr.Status, pr.Message = asset.ProbeOK, dir+" is writable"
	return pr
}

// setupFacts runs the kind's read-only doctor probes on the asset's
// source for check: what is wrong with its archive settings (check fails
// wal_lag with it; "" when nothing, or the kind cannot tell), and the
// rest. A source that cannot be reached gives neither: wal_lag says so.
func (s *Service) setupFacts(ctx context.Context, a *policy.Asset) (string, *health.SetupFacts) {
	_, k, err := s.Asset(a.Name)
	if err != nil {
		return "", nil
	}
	d, ok := k.(asset.Doctor)
	if !ok {
		return "", nil
	}
	run := &asset.DoctorRun{Asset: a, PolicyPath: s.Policy.Source, Quick: true, Log: s.Log}
	rps, _ := s.Policy.AssetRepositories(a)
	for _, rp := range rps {
		if rp.KeyFile != "" {
			run.Secrets = append(run.Secrets, rp.KeyFile)
		}
	}
	archiving := ""
	sf := &health.SetupFacts{}
	for _, pr := range d.Probes(ctx, run) {
		switch {
		case pr.Name == asset.ProbeServer && pr.Status == asset.ProbeFail:
			return "", nil
		case pr.Name == asset.ProbeArchiving:
			if pr.Status == asset.ProbeFail {
				archiving = pr.Message // it names the fix
			}
		case pr.Status == asset.ProbeFail:
			line := pr.Name + ": " + pr.Message
			if pr.Fix != "" {
				line += "; fix: " + pr.Fix
			}
			sf.Failures = append(sf.Failures, line)
		case pr.Name != asset.ProbeServer && !slices.Contains(sf.Passed, pr.Name):
			sf.Passed = append(sf.Passed, pr.Name)
		}
	}
	return archiving, sf
}

// DoctorFailed counts the failing probes.
func DoctorFailed(ps []asset.Probe) int {
	n := 0
	for _, p := range ps {
		if p.Status == asset.ProbeFail {
			n++
		}
	}
	return n
}
