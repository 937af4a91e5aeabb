package s3test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Fault is what a FaultProxy does to one request.
type Fault int

// Faults a proxy can inject.
const (
	Pass            Fault = iota // forward untouched
	Status503                    // answer 503 Slow Down without forwarding
	Status500                    // answer 500 without forwarding
	Reset                        // close the connection without an answer
	FlipRequestBody              // forward with one byte of the request body flipped
	FlipResponse                 // forward, flip one byte of the response body
	SlowResponse                 // forward, then dribble the response body slowly
	// Status200Error answers 200 OK with an S3 error document, without
	// forwarding: a store that failed but said so only in the body, as S3
	// does for some calls. Nothing was stored.
	Status200Error
	// DropResponse forwards the request, then closes the connection
	// without passing the answer on: the store acted (an upload is kept)
	// but the client never hears of it, as when an acknowledgement is lost.
	DropResponse
)

// FaultProxy sits between a client and a Server and injects faults into
// chosen requests. It keeps the client's Host header so that signatures
// made for the proxy's address still verify at the server.
type FaultProxy struct {
	Endpoint string // point the client here
	mu       sync.Mutex
	plan     []Fault                    // faults for the next matching requests, in order
	match    func(r *http.Request) bool // which requests the plan applies to
	Seen     int                        // requests that matched
}

// NewFaultProxy starts a proxy in front of srv; it stops with the test.
func NewFaultProxy(t testing.TB, srv *Server) *FaultProxy {
	t.Helper()
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			switch resp.Request.Header.Get("X-Lifeboat-Fault") {
			case "flip-response":
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					return err
				}
				if len(body) > 0 {
					body[len(body)/2] ^= 0x01
				}
				resp.Body = io.NopCloser(bytes.NewReader(body))
			case "slow":
				resp.Body = &slowReader{r: resp.Body}
			}
			return nil
		},
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p.next(r) {
		case Status503:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`)
			return
		case Status500:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`)
			return
		case Status200Error:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`)
			return
		case Reset:
			reset(w)
			return
		case DropResponse:
			rp.ServeHTTP(httptest.NewRecorder(), r)
			reset(w)
			return
		case FlipRequestBody:
			body, err := io.ReadAll(r.Body)
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			if len(body) > 0 {
				body[len(body)/2] ^= 0x01
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		case FlipResponse:
			r.Header.Set("X-Lifeboat-Fault", "flip-response")
		case SlowResponse:
			r.Header.Set("X-Lifeboat-Fault", "slow")
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	p.Endpoint = hs.URL
	return p
}

// Inject plans faults for the next requests that match (nil matches all);
// requests after the plan is used up pass untouched.
func (p *FaultProxy) Inject(match func(r *http.Request) bool, faults ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.match, p.plan, p.Seen = match, faults, 0
}

func (p *FaultProxy) next(r *http.Request) Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.plan) == 0 || (p.match != nil && !p.match(r)) {
		return Pass
	}
	p.Seen++
	f := p.plan[0]
	p.plan = p.plan[1:]
	return f
}

// reset closes the client's connection with a TCP reset, without an answer.
func reset(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST rather than FIN
			}
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// slowReader hands out a response body a few bytes at a time.
type slowReader struct{ r io.ReadCloser }

func (s *slowReader) Read(b []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	if len(b) > 512 {
		b = b[:512]
	}
	return s.r.Read(b)
}

func (s *slowReader) Close() error { return s.r.Close() }

// Injected returns how many faults the current plan has dealt out; unlike
// Seen it may be read while requests are still arriving.
func (p *FaultProxy) Injected() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Seen
}
