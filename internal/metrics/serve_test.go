package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServeAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = Serve(ctx, addr, New().Handler(), nil)
	if err == nil {
		t.Fatal("Serve on an address in use returned nil")
	}
	// At once, not after the context ran out.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Serve took %v to report the error", d)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %q does not wrap EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "metrics.listen") {
		t.Errorf("error %q names neither the address nor the policy key", err)
	}
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// TestServeStopsWithContext runs Serve itself on a free port, scrapes it
// and cancels it.
func TestServeStopsWithContext(t *testing.T) {
	// Find a free port, then hand it to Serve; another process taking it
	// in between would only make this test fail, not pass wrongly.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	m := New()
	m.SetWALLag("ledger", 7)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, addr, m.Handler(), nil) }()

	base := "http://" + addr
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	expect(t, scrape(t, base+"/metrics"), map[string]float64{`lifeboat_wal_archive_lag_seconds{asset="ledger"}`: 7})
	if code, _ := get(t, base+"/other"); code != http.StatusNotFound {
		t.Errorf("/other: %d, want 404", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(shutdownTimeout + 2*time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after Serve returned")
	}
}

// TestServeShutdownCutsStuckClient: a client that holds a connection open
// mid-request does not keep Serve from returning.
func TestServeShutdownCutsStuckClient(t *testing.T) {
	s, err := Listen("127.0.0.1:0", New().Handler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Half a request: the server waits for the rest of the headers.
	if _, err := c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(shutdownTimeout + 3*time.Second):
		t.Fatal("Serve did not return")
	}
	if d := time.Since(start); d > shutdownTimeout+time.Second {
		t.Errorf("shutdown took %v", d)
	}
}
