package s3

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// conns keeps the connections the backend's HTTP client dialled, so that
// Close can release them. The SDK builds its http.Client, and the transport
// inside it, out of sight (each option yields a copy), so the transport's
// own CloseIdleConnections cannot be reached; the dialer can.
type conns struct {
	mu     sync.Mutex
	closed bool
	open   map[*conn]struct{}
}

// conn is a dialled connection that leaves the set when the transport
// closes it (an idle timeout, a broken connection).
type conn struct {
	net.Conn
	set  *conns
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.open, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// track wraps dial so that every connection it makes is kept.
func (s *conns) track(dial dialFunc) dialFunc {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			c.Close()
			return nil, fmt.Errorf("dial %s: %w", addr, storage.ErrClosed)
		}
		if s.open == nil {
			s.open = map[*conn]struct{}{}
		}
		tc := &conn{Conn: c, set: s}
		s.open[tc] = struct{}{}
		return tc, nil
	}
}

// closeAll closes every connection still open and refuses new ones. The
// owner calls it after its last call, so the connections are idle ones.
func (s *conns) closeAll() {
	s.mu.Lock()
	s.closed = true
	open := s.open
	s.open = nil
	s.mu.Unlock()
	for c := range open {
		c.Conn.Close()
	}
}

// count reports how many connections are open (for tests).
func (s *conns) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// trackConns is an s3api option that makes the client dial through s. It
// runs after the SDK resolved its HTTP client, which copies the transport
// with every option it applies; a client that is not the SDK's buildable
// one (none is, today) is left alone.
func trackConns(s *conns) func(*s3api.Options) {
	return func(o *s3api.Options) {
		if bc, ok := o.HTTPClient.(*awshttp.BuildableClient); ok {
			o.HTTPClient = bc.WithTransportOptions(func(t *http.Transport) {
				t.DialContext = s.track(t.DialContext)
			})
		}
	}
}
