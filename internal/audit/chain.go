package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// Hash is a SHA-256 value of the chain.
type Hash [32]byte

// String is the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash reads a hash written by String.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("hash %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %q: %w", s, err)
	}
	return h, nil
}

// NewChainID is the random id of a new chain: 16 hex digits, made once
// per catalog. Seals name the chain, so chains of several hosts (or of
// one host's successive catalogs) in one repository stay apart.
func NewChainID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Genesis is the hash before a chain's first event:
// SHA-256("lifeboat/audit/v1/genesis" || 0x00 || chain id).
func Genesis(chain string) Hash {
	return sha256.Sum256([]byte("lifeboat/audit/v1/genesis\x00" + chain))
}

// Digest is an event's digest: SHA-256 of its stored encoding.
func Digest(body []byte) Hash { return sha256.Sum256(body) }

// Link is the hash of the chain once an event of digest d follows prev:
// SHA-256("lifeboat/audit/v1/link" || 0x00 || prev || d). Chaining
// digests rather than bodies lets a seal vouch for events of other assets
// by their digest alone, without disclosing them.
func Link(prev, d Hash) Hash {
	var buf [len("lifeboat/audit/v1/link\x00") + 64]byte
	n := copy(buf[:], "lifeboat/audit/v1/link\x00")
	n += copy(buf[n:], prev[:])
	copy(buf[n:], d[:])
	return sha256.Sum256(buf[:])
}

// Record is an event as the catalog keeps it: the stored encoding and
// the chain's hash once it is appended, with the columns it is listed by.
type Record struct {
	Seq     uint64
	Time    time.Time
	Asset   string
	Type    string
	Outcome string
	Body    []byte
	Hash    Hash
}

// Append makes the record of e following the chain's last event (seq
// last, hash lastHash; 0 and anything for an empty chain): e gets its
// sequence number and chain id.
func Append(chain string, last uint64, lastHash Hash, e *Event) (Record, error) {
	if last == 0 {
		lastHash = Genesis(chain)
	}
	e.Seq, e.Chain = last+1, chain
	body, err := Encode(e)
	if err != nil {
		return Record{}, err
	}
	return Record{Seq: e.Seq, Time: e.Time.UTC(), Asset: e.Asset, Type: e.Type, Outcome: e.Outcome,
		Body: body, Hash: Link(lastHash, Digest(body))}, nil
}

// Seal is the chain's head as written into a repository: the head's
// sequence number and hash, and every event since the previous seal into
// the same repository: its digest, and its body when it concerns the
// repository (an event of one of its assets, or of the repository
// itself). From the previous hash and the digests anyone holding the
// repository key recomputes the head, so the seal vouches for the chain
// up to its head, and the bodies are the events themselves.
type Seal struct {
	Chain    string
	Host     string
	From     uint64 // first event sealed
	Prev     Hash   // the chain's hash before From
	Head     uint64
	HeadHash Hash
	Events   []SealedEvent
	// Bodies is how many events the seal carries whole (it stays right
	// after DropBodies).
	Bodies int
	// digests are the events' digests once DropBodies dropped Events.
	digests []Hash
}

// DropBodies keeps only the events' digests once the seal has been
// checked: verifying a chain needs nothing else, and a year of seals
// holds as many bodies as the catalog.
func (s *Seal) DropBodies() {
	if s.Events == nil {
		return
	}
	s.digests = make([]Hash, len(s.Events))
	for i, e := range s.Events {
		s.digests[i] = e.Digest
	}
	s.Events = nil
}

// Digests are the digests of events From..Head, in order.
func (s *Seal) Digests() []Hash {
	if s.Events == nil {
		return s.digests
	}
	out := make([]Hash, len(s.Events))
	for i, e := range s.Events {
		out[i] = e.Digest
	}
	return out
}

// SealedEvent is one event of a seal.
type SealedEvent struct {
	Seq    uint64
	Digest Hash
	Body   []byte // nil when withheld: the event concerns other repositories
}

// MakeSeal seals recs, the chain's events From..Head in order; prev is
// the hash before the first; withBody says which events the seal carries
// whole.
func MakeSeal(chain, host string, prev Hash, recs []Record, withBody func(*Record) bool) *Seal {
	s := &Seal{Chain: chain, Host: host, Prev: prev}
	if len(recs) > 0 {
		s.From, s.Head, s.HeadHash = recs[0].Seq, recs[len(recs)-1].Seq, recs[len(recs)-1].Hash
	}
	for i := range recs {
		se := SealedEvent{Seq: recs[i].Seq, Digest: Digest(recs[i].Body)}
		if withBody(&recs[i]) {
			se.Body = recs[i].Body
			s.Bodies++
		}
		s.Events = append(s.Events, se)
	}
	return s
}

// Name is where the seal goes within its chain's part of the audit area:
// the head and the first event, 20 digits each, so that names sort by
// head and two seals of one head into one repository differ only if
// their content does.
func (s *Seal) Name() string { return fmt.Sprintf("%020d-%020d", s.Head, s.From) }

// ParseSealName reads the head and first event from a seal's name.
func ParseSealName(name string) (head, from uint64, ok bool) {
	if len(name) != 41 || name[20] != '-' {
		return 0, 0, false
	}
	h, err1 := strconv.ParseUint(name[:20], 10, 64)
	f, err2 := strconv.ParseUint(name[21:], 10, 64)
	return h, f, err1 == nil && err2 == nil
}

const sealMagic = "lifeboat-audit-seal v1"

// Marshal writes the seal as text: a header of "key value" lines, then
// one line per event, "<seq> <digest> <body>", the body "-" when
// withheld (an encoded event is one line: JSON escapes line breaks).
func (s *Seal) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nchain %s\nhost %s\nfrom %d\nprev %s\nhead %d\nhead_hash %s\nevents %d\n",
		sealMagic, s.Chain, s.Host, s.From, s.Prev, s.Head, s.HeadHash, len(s.Events))
	for _, e := range s.Events {
		b.WriteString(strconv.FormatUint(e.Seq, 10))
		b.WriteByte(' ')
		b.WriteString(e.Digest.String())
		b.WriteByte(' ')
		if e.Body == nil {
			b.WriteByte('-')
		} else {
			b.Write(e.Body)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// UnmarshalSeal reads a seal written by Marshal and checks that it holds
// together (Check).
func UnmarshalSeal(data []byte) (*Seal, error) {
	s := &Seal{}
	header := []string{"", "chain", "host", "from", "prev", "head", "head_hash", "events"}
	var n uint64
	for i, key := range header {
		line, rest, ok := bytes.Cut(data, []byte{'\n'})
		if !ok {
			return nil, fmt.Errorf("seal: truncated header")
		}
		data = rest
		if i == 0 {
			if string(line) != sealMagic {
				return nil, fmt.Errorf("seal: not a %s", sealMagic)
			}
			continue
		}
		k, v, _ := bytes.Cut(line, []byte{' '})
		if string(k) != key {
			return nil, fmt.Errorf("seal: line %d is %q, want %s", i+1, k, key)
		}
		var err error
		switch key {
		case "chain":
			s.Chain = string(v)
		case "host":
			s.Host = string(v)
		case "from":
			s.From, err = strconv.ParseUint(string(v), 10, 64)
		case "prev":
			s.Prev, err = ParseHash(string(v))
		case "head":
			s.Head, err = strconv.ParseUint(string(v), 10, 64)
		case "head_hash":
			s.HeadHash, err = ParseHash(string(v))
		case "events":
			n, err = strconv.ParseUint(string(v), 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("seal: %s: %w", key, err)
		}
	}
	if n > uint64(len(data)/66+1) {
		return nil, fmt.Errorf("seal: %d events in %d bytes", n, len(data))
	}
	s.Events = make([]SealedEvent, 0, n)
	for range n {
		line, rest, ok := bytes.Cut(data, []byte{'\n'})
		if !ok {
			return nil, fmt.Errorf("seal: %d events announced, %d found", n, len(s.Events))
		}
		data = rest
		seqText, rest2, ok1 := bytes.Cut(line, []byte{' '})
		digestText, body, ok2 := bytes.Cut(rest2, []byte{' '})
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("seal: event line %d malformed", len(s.Events)+1)
		}
		var e SealedEvent
		var err error
		if e.Seq, err = strconv.ParseUint(string(seqText), 10, 64); err != nil {
			return nil, fmt.Errorf("seal: event line %d: %w", len(s.Events)+1, err)
		}
		if e.Digest, err = ParseHash(string(digestText)); err != nil {
			return nil, fmt.Errorf("seal: event %d: %w", e.Seq, err)
		}
		if len(body) != 1 || body[0] != '-' {
			e.Body = body
			s.Bodies++
		}
		s.Events = append(s.Events, e)
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("seal: %d bytes after the events", len(data))
	}
	if seq, err := s.Check(); err != nil {
		return nil, fmt.Errorf("seal: event %d: %w", seq, err)
	}
	return s, nil
}

// Check verifies that the seal holds together: its events run from From
// to Head without a gap, each body has its digest and its place, and the
// digests lead from Prev (the genesis, for a seal from the first event)
// to HeadHash. It returns the first event that does not, with why.
func (s *Seal) Check() (uint64, error) {
	if s.From == 0 || s.Head < s.From || uint64(len(s.Events)) != s.Head-s.From+1 {
		return s.From, fmt.Errorf("events %d..%d but %d listed", s.From, s.Head, len(s.Events))
	}
	if s.From == 1 && s.Prev != Genesis(s.Chain) {
		return 1, fmt.Errorf("the chain's first event does not follow its genesis")
	}
	h := s.Prev
	for i, e := range s.Events {
		want := s.From + uint64(i)
		if e.Seq != want {
			return want, fmt.Errorf("listed as event %d", e.Seq)
		}
		if e.Body != nil {
			if Digest(e.Body) != e.Digest {
				return want, fmt.Errorf("body does not match its digest")
			}
			if seq, err := BodySeq(e.Body); err != nil || seq != want {
				return want, fmt.Errorf("body is not event %d", want)
			}
		}
		h = Link(h, e.Digest)
	}
	if h != s.HeadHash {
		return s.Head, fmt.Errorf("the events do not lead to the head hash")
	}
	return 0, nil
}
