package s3

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// TestCloseClosesConnections: the connections the SDK's client dialled
// are closed by Close, for plain HTTP and TLS alike, and no call after it
// reaches the store.
func TestCloseClosesConnections(t *testing.T) {
	plain, secure := s3test.Start(t), s3test.StartTLS(t)
	for _, tc := range []struct {
		name string
		srv  *s3test.Server
		ca   string
	}{
		{"http", plain, ""},
		{"tls", secure, secure.CAFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			tc.srv.CreateBucket(t, "close-"+tc.name, false)
			be, err := New(ctx, Options{Bucket: "close-" + tc.name, Endpoint: tc.srv.Endpoint, Region: tc.srv.Region, PathStyle: true,
				AccessKey: tc.srv.AccessKey, SecretKey: tc.srv.SecretKey, CAFile: tc.ca})
			if err != nil {
				t.Fatal(err)
			}
			b := be.(*backend)
			data := []byte("object")
			if err := be.Put(ctx, "data/x", bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if got, err := storage.ReadAll(ctx, be, "data/x"); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %q, %v", got, err)
			}
			b.conns.mu.Lock()
			var open []net.Conn
			for c := range b.conns.open {
				open = append(open, c.Conn)
			}
			b.conns.mu.Unlock()
			if len(open) == 0 {
				t.Fatal("no connection tracked after three calls: the dialer is not the client's")
			}
			if err := be.Close(); err != nil {
				t.Fatal(err)
			}
			if n := b.conns.count(); n != 0 {
				t.Errorf("%d connections tracked after close", n)
			}
			for _, c := range open {
				if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
					t.Errorf("write to a connection after close: err = %v, want net.ErrClosed", err)
				}
			}
			if _, err := be.Stat(ctx, "data/x"); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("stat after close: err = %v, want ErrClosed", err)
			}
			if n := b.conns.count(); n != 0 {
				t.Errorf("a call after close dialled: %d connections", n)
			}
			if err := be.Close(); err != nil {
				t.Errorf("second close: %v", err)
			}
		})
	}
}
