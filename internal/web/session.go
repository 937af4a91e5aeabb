package web

import (
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
)

// session is a signed-in browser. Sessions live in memory: a restart of
// the dashboard signs everyone out, which is the safe direction.
type session struct {
	user    string
	role    Role
	csrf    string
	expires time.Time
	// ceremony is a security-key registration begun and not finished;
	// registered are the webauthn_signers lines of keys registered in
	// this session, shown until the session ends.
	ceremony   *webauthn.SessionData
	registered []string
}

type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	ttl  time.Duration
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{byID: map[string]*session{}, ttl: ttl}
}

func (s *sessions) create(u *User, now time.Time) (string, *session) {
	id := randomText(32)
	ses := &session{user: u.Name, role: u.Role, csrf: randomText(32), expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.byID {
		if !now.Before(v.expires) {
			delete(s.byID, k)
		}
	}
	s.byID[id] = ses
	return id, ses
}

func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ses := s.byID[id]
	if ses == nil {
		return nil
	}
	if !now.Before(ses.expires) {
		delete(s.byID, id)
		return nil
	}
	return ses
}

func (s *sessions) setCeremony(ses *session, d *webauthn.SessionData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ses.ceremony = d
}

// takeCeremony returns the registration begun in ses, once.
func (s *sessions) takeCeremony(ses *session) *webauthn.SessionData {
	if ses == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := ses.ceremony
	ses.ceremony = nil
	return d
}

func (s *sessions) addRegistered(ses *session, line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ses.registered = append(ses.registered, line)
}

func (s *sessions) registered(ses *session) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), ses.registered...)
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// limiter refuses sign-in from a client address or for a user name after
// too many failures in a window, so that passwords and TOTP codes cannot
// be guessed at speed.
type limiter struct {
	mu       sync.Mutex
	failures map[string][]time.Time
	max      int
	window   time.Duration
}

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{failures: map[string][]time.Time{}, max: max, window: window}
}

func (l *limiter) recent(key string, now time.Time) []time.Time {
	var keep []time.Time
	for _, t := range l.failures[key] {
		if now.Sub(t) < l.window {
			keep = append(keep, t)
		}
	}
	if keep == nil {
		delete(l.failures, key)
	} else {
		l.failures[key] = keep
	}
	return keep
}

// allowed reports whether none of keys has reached the limit.
func (l *limiter) allowed(now time.Time, keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if len(l.recent(k, now)) >= l.max {
			return false
		}
	}
	return true
}

func (l *limiter) fail(now time.Time, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		l.failures[k] = append(l.recent(k, now), now)
	}
}
