package ledger

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// hangingNode listens on loopback, takes every connection and reads it for
// ever without answering: a node behind a dropped route, or wedged. It is
// closed when the test ends.
func hangingNode(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go io.Copy(io.Discard, c)
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestNodeThatNeverAnswers: dialling a node that takes the connection and
// never answers fails within DialTimeout, naming the node and saying it did
// not answer in time; once dialled, each request is bounded by
// RequestTimeout, so clearing's background loops cannot block on one for
// ever (an outside test saw `ledger status`, the role commands and
// clearing's start hang without a word).
func TestNodeThatNeverAnswers(t *testing.T) {
	prevDial, prevReq := DialTimeout, RequestTimeout
	DialTimeout, RequestTimeout = 300*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { DialTimeout, RequestTimeout = prevDial, prevReq })
	ctx := testContext(t)
	hang := hangingNode(t)
	keyFile := filepath.Join(t.TempDir(), "k.key")
	if _, err := loadOrCreateKey(keyFile); err != nil {
		t.Fatal(err)
	}
	contract := common.HexToAddress("0x01").Hex()
	for _, tc := range []struct {
		name string
		dial func() error
	}{
		{"DialReadOnly", func() error { _, err := DialReadOnly(ctx, hang, contract); return err }},
		{"Dial", func() error { _, err := Dial(ctx, hang, keyFile, contract); return err }},
		{"Deploy", func() error { _, err := Deploy(ctx, hang, keyFile, common.Address{}); return err }},
	} {
		start := time.Now()
		err := tc.dial()
		if took := time.Since(start); err == nil || took > 5*time.Second || !strings.Contains(err.Error(), hang) ||
			!strings.Contains(err.Error(), "did not answer within 300ms") {
			t.Errorf("%s on a node that never answers: %v after %s; want it to name %s and say it did not answer in time", tc.name, err, took.Round(time.Millisecond), hang)
		}
	}

	// A node that answers the dial, then stops.
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	var stop atomic.Bool
	proxy := rpcProxy(t, e.HTTPEndpoint(), func([]byte) ([]byte, bool) {
		if stop.Load() {
			time.Sleep(2 * time.Second) // past the bound; the test server waits for it on close
		}
		return nil, false
	}, nil)
	c, err := DialReadOnly(ctx, proxy, e.ContractAddress().Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop.Store(true)
	start := time.Now()
	_, err = c.NextBatchID(context.Background()) // as the commit loop asks: no deadline of its own
	if took := time.Since(start); err == nil || took > 1500*time.Millisecond || !strings.Contains(err.Error(), proxy) ||
		!strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Errorf("NextBatchID from a node that stopped answering: %v after %s; want it bounded, naming %s", err, took.Round(time.Millisecond), proxy)
	}
}
